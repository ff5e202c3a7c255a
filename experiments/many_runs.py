"""Several runs in one compiled program: `jax.vmap` over seeds.

A reproduction grid is hundreds of small runs, and one LeNet or MLP step at
batch 32 leaves most of a CPU (and nearly all of a GPU) idle. Runs of the
same method and model that differ only in their seed - the noise draw, the
split, the initialization, the example order - can share one program:
`jax.vmap` of the per-run step (`steps.make_train_steps`) over the stacked
states, each run with its own training arrays, permutation and augmentation
key. Everything else (phases, end-of-epoch hooks, evaluation, metrics,
summaries) is per run, as in `train.py`, so each run's workdir receives the
same files as a run of its own, and the same metrics up to float
reassociation.

The runs' stacked state is checkpointed once for the group (orbax, every
epoch, in `group_dir`), with every run's history: killed, the group resumes
bit-identically.
"""

import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections

from experiments import atomic
from experiments import checkpoints as ckpt
from experiments import data as data_lib
from experiments import errors
from experiments import evaluation
from experiments import phases
from experiments import run_config
from experiments import steps
from experiments import train


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, i: int):
  return jax.tree.map(lambda x: x[i], tree)


def group_config(configs: list[ml_collections.ConfigDict]) -> ml_collections.ConfigDict:
  """The configuration that identifies a group: the first, with every seed.

  Raises:
    UserError: unless the configs differ in their seed only.
  """
  first = run_config.as_dict(configs[0])
  for config in configs[1:]:
    other = run_config.as_dict(config)
    differ = sorted(k for k in first.keys() | other.keys()
                    if k != "seed" and first.get(k) != other.get(k))
    if differ:
      raise errors.UserError(
          f"runs in one program must differ in their seed only; they differ "
          f"in {differ}."
      )
  group = ml_collections.ConfigDict(configs[0].to_dict())
  group.seed = -1  # Not a run's seed: the group's seeds are `seeds`.
  group.seeds = tuple(c.seed for c in configs)
  return group


def _compiled(exp: train.Experiment, plan: phases.PhasePlan, num_steps: int) -> Callable:
  spec = data_lib.get_spec(exp.config.dataset)
  train_steps = steps.make_train_steps(
      plan.phase.train_step, spec, plan.batch_size, exp.mesh,
      plan.steps_per_epoch, num_steps, plan.first_step, plan.first_epoch - 1,
  )
  return jax.jit(jax.vmap(train_steps), out_shardings=NamedSharding(exp.mesh, P()))


def train_and_evaluate_many(
    configs: list[ml_collections.ConfigDict],
    workdirs: list[str],
    group_dir: str,
    dataset: data_lib.Dataset | None = None,
) -> list[dict[str, Any]] | None:
  """Trains the runs `configs` (differing only in seed) in one program.

  Args:
    configs: one configuration per run.
    workdirs: one workdir per run (metrics.jsonl, summary.json, ...).
    group_dir: where the group's checkpoints go.
    dataset: the loaded clean dataset, loaded from the config when None.

  Returns:
    The runs' summaries, or None when `stop_after_epochs` stopped the group.
  """
  group = group_config(configs)
  if dataset is None:
    dataset = data_lib.load_configured(group)
  if group.input_pipeline != "device":
    raise errors.UserError(
        "runs trained together (runs_per_program > 1) need "
        "input_pipeline='device'.")
  exps, states = zip(*(train.setup(c, dataset) for c in configs))
  lead = exps[0]
  if len({e.steps_per_epoch for e in exps}) > 1:
    raise errors.UserError("the runs' epochs have different numbers of steps.")
  state = _stack(states)
  arrays = _stack([e.feed.arrays for e in exps])
  keys = jnp.stack([steps.augment_key(c.seed) for c in configs])
  fns: dict[tuple[str, int], Callable] = {}
  for workdir in [*workdirs, group_dir]:
    os.makedirs(workdir, exist_ok=True)
  for config, workdir in zip(configs, workdirs):
    atomic.write_json(
        os.path.join(workdir, "config.json"), run_config.as_dict(config)
    )

  bests = _stack([train.initial_best(e, s) for e, s in zip(exps, states)])
  with ckpt.manager(group_dir, group.checkpoints_to_keep) as checkpoints:
    (state, bests), saved, _ = ckpt.restore(checkpoints, (state, bests), group)
    histories = saved or [[] for _ in configs]
    first_epoch = len(histories[0]) + 1
    for epoch in range(first_epoch, group.num_epochs + 1):
      if epoch - first_epoch == group.stop_after_epochs:
        checkpoints.wait_until_finished()
        return None
      start = time.perf_counter()
      plan = phases.plan_at(lead.plans, epoch)
      perms = jnp.stack([
          steps.epoch_permutation(c.seed, epoch, len(e.data.train_labels))
          for c, e in zip(configs, exps)
      ])
      totals = _stack([
          steps.zero_metrics(
              plan.phase.train_step, s.method, arrays.images.shape[2:], group,
              plan.batch_size,
          )
          for s in states
      ])
      learning_rate = float(lead.schedule(int(state.step[0])))
      for num_steps in plan.calls:
        key = (plan.phase.name, num_steps)
        if key not in fns:
          fns[key] = _compiled(lead, plan, num_steps)
        state, totals = fns[key](state, totals, arrays, perms, keys)
      # Dispatch is asynchronous: wait for the training before timing it.
      totals = jax.block_until_ready(totals)
      train_time = time.perf_counter() - start
      runs, run_bests = [], []
      for i, (exp, history) in enumerate(zip(exps, histories)):
        run_start = time.perf_counter()
        run = _unstack(state, i)
        if exp.method.end_epoch is not None:
          run = run._replace(
              method=exp.method.end_epoch(run.method, epoch, train.epoch_view(exp))
          )
        record = {"epoch": epoch, "step": int(run.step),
                  "phase": plan.phase.name, "learning_rate": learning_rate}
        record.update(steps.epoch_means(
            jax.device_get(_unstack(totals, i)), plan.steps_per_epoch,
            plan.batch_size,
        ))
        # Training time is shared by the group: each run's share.
        record["train_time_s"] = train_time / len(configs)
        record.update(train.evaluate(exp, run))
        # Its share of the training, then its own hook and evaluation.
        record["epoch_time_s"] = (
            record["train_time_s"] + time.perf_counter() - run_start
        )
        history.append(record)
        run, best = train.hand_over(exp, run, _unstack(bests, i), epoch, history)
        runs.append(run)
        run_bests.append(best)
      state, bests = _stack(runs), _stack(run_bests)
      for workdir, history in zip(workdirs, histories):
        atomic.write_jsonl(os.path.join(workdir, "metrics.jsonl"), history)
      print(
          f"[seeds {list(group.seeds)}] " + evaluation.epoch_line(
              histories[0][-1], group.num_epochs
          ),
          flush=True,
      )
      ckpt.save(checkpoints, epoch, (state, bests), histories, group)
    checkpoints.wait_until_finished()
  return [
      train.finish(exp, _unstack(state, i), history, workdir)
      for i, (exp, history, workdir) in enumerate(zip(exps, histories, workdirs))
  ]
