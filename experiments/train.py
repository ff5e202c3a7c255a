"""Training loop for learning with noisy labels.

`train_and_evaluate(config, workdir)` trains one model with one method on one
noisy dataset and follows the CDR paper's protocol: after every epoch it
evaluates the accuracy on the noisy validation set and on the clean test set,
and the reported result is the test accuracy at the epoch of best validation
accuracy (the first such epoch on ties).

The loop never names a method: it resolves the dataset spec, the network and
the method once in `setup` and calls the method's `init`, `train_step`,
`predict` and optional `end_epoch` (see `experiments/methods/base.py`).

Design notes:

* Every epoch draws a permutation with `jax.random.permutation`. Batches
  reach the step by one of two input paths (experiments/feeds.py): the
  whole uint8 split on the devices, gathered by the jitted step from the
  permutation (no data crosses the host per step), or the same batches
  streamed by grain from memory or disk.
* Every epoch has `num_train // batch_size` steps: the last partial batch is
  dropped (the reference code's DataLoader keeps it). Dropping it keeps one
  compiled step shape and the batch divisible by the number of devices; at
  most batch_size - 1 examples per epoch are skipped, a different set each
  epoch.
* Data parallelism: a 1-D mesh over every device of every process
  (experiments/distributed.py; process 0 writes the files); the batch is
  sharded along it, the method's state and the dataset are replicated, and
  XLA inserts the gradient all-reduce. BatchNorm statistics are then over
  the global batch, so any device count computes the same step (up to float
  reassociation). The same code runs on CPU, GPU and TPU.
* Randomness is derived from (seed, stream, epoch or step) with `fold_in`,
  never carried, so a run resumed from a checkpoint is bit-identical to an
  uninterrupted one. On resume `metrics.jsonl` is rewritten from the
  checkpoint, so epochs that ran after it are neither lost nor duplicated.
"""

import contextlib
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments import atomic
from experiments import checkpoints as ckpt
from experiments import distributed
from experiments import divergence
from experiments import errors
from experiments import evaluation
from experiments import feeds
from experiments import methods
from experiments import mid_epoch
from experiments import models
from experiments import phases
from experiments import progress
from experiments import run_config
from experiments import data as data_lib
from experiments.data import real_noise
from experiments import steps

def learning_rate_schedule(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.Schedule:
  """Base rate, times `lr_decay` from the first step of each milestone epoch.

  Milestones are 1-based epochs: (10, 20) decays before the 10th and the 20th
  epoch, which is the reference code's effective schedule (see
  configs/default.py).
  """
  return optax.piecewise_constant_schedule(
      config.learning_rate,
      {(int(m) - 1) * steps_per_epoch: config.lr_decay
       for m in config.lr_milestones},
  )


class Experiment(NamedTuple):
  """What a run needs besides its state: data, method, compiled functions."""

  config: ml_collections.ConfigDict
  method: methods.Method
  data: data_lib.NoisyDataset
  # How batches reach the step and splits reach evaluation (feeds.py).
  feed: feeds.DeviceFeed | feeds.GrainFeed
  image_shape: tuple[int, ...]  # (h, w, c) of what the step sees.
  schedule: optax.Schedule
  # At config.batch_size (the protocol's; a phase may have its own).
  steps_per_epoch: int
  plans: tuple[phases.PhasePlan, ...]
  # One compiled function per (phase, steps per call), built on first use.
  train_fns: dict[tuple[str, int], Callable]
  mesh: jax.sharding.Mesh


def load_data(
    config: ml_collections.ConfigDict,
    dataset: data_lib.Dataset | None = None,
) -> data_lib.NoisyDataset:
  """Loads the dataset (unless given) and applies the configured noise."""
  if dataset is None:
    dataset = data_lib.load_configured(config)
  if dataset is None:  # A folder dataset: its release's own protocol.
    return real_noise.make_folder_dataset(config)
  return data_lib.make_noisy_dataset(
      dataset,
      config.noise_type,
      config.noise_rate,
      config.seed,
      val_fraction=config.val_fraction,
      num_train_examples=config.num_train_examples,
  )


def build_method(
    config: ml_collections.ConfigDict,
    *,
    image_shape: tuple[int, ...],
    num_classes: int,
    num_train: int,
    steps_per_epoch: int,
    corruption_rate: float,
) -> tuple[methods.Method, steps.LoopState]:
  """The configured method and its initial loop state (on the host)."""
  ctx = methods.Context(
      args=methods.args_of(config),
      config=config,
      network=models.network(
          config.model,
          input_shape=image_shape,
          num_classes=num_classes,
          mlp_hidden=config.mlp_hidden,
          dtype=config.dtype,
          init_checkpoint=config.init_checkpoint,
      ),
      num_classes=num_classes,
      num_train=num_train,
      steps_per_epoch=steps_per_epoch,
      learning_rate=learning_rate_schedule(config, steps_per_epoch),
      noise_rate=config.noise_rate,
      corruption_rate=corruption_rate,
  )
  method = methods.get(config.method).make(ctx)
  key = jax.random.fold_in(jax.random.key(config.seed), steps.INIT_STREAM)
  return method, steps.LoopState(jnp.zeros([], jnp.int32), method.init(key))


def setup(
    config: ml_collections.ConfigDict,
    dataset: data_lib.Dataset | None = None,
) -> tuple[Experiment, steps.LoopState]:
  """Validates the config, loads the data, builds the method and functions."""
  run_config.validate(config)
  mesh = distributed.make_mesh(config.num_devices)
  run_config.validate(config, mesh.devices.size)
  spec = data_lib.get_spec(config.dataset)
  data = load_data(config, dataset)
  distributed.check_same("labels, noise and split", lambda: (
      data.train_labels, data.train_clean_labels, data.val_labels,
      np.asarray(steps.epoch_permutation(config.seed, 1,
                                         len(data.train_labels)))))
  steps_per_epoch = len(data.train_labels) // config.batch_size
  if steps_per_epoch == 0:
    raise errors.UserError(
        f"batch_size={config.batch_size} exceeds the {len(data.train_labels)} "
        "training examples."
    )
  image_shape = feeds.image_shape(config, data, spec)
  method, state = build_method(
      config,
      image_shape=image_shape,
      num_classes=data.num_classes,
      num_train=len(data.train_labels),
      steps_per_epoch=steps_per_epoch,
      corruption_rate=data.corruption_rate,
  )
  plans = phases.phase_plans(method, config, len(data.train_labels), mesh.devices.size)
  state = distributed.replicate(state, mesh)
  experiment = Experiment(
      config=config,
      method=method,
      data=data,
      feed=feeds.make_feed(config, data, spec, mesh, method),
      image_shape=image_shape,
      schedule=learning_rate_schedule(config, steps_per_epoch),
      steps_per_epoch=steps_per_epoch,
      plans=plans,
      train_fns={},
      mesh=mesh,
  )
  return experiment, state


def _train_fn(exp: Experiment, plan: phases.PhasePlan, num_steps: int) -> Callable:
  key = (plan.phase.name, num_steps)
  if key not in exp.train_fns:
    exp.train_fns[key] = exp.feed.make_train_fn(plan, num_steps)
  return exp.train_fns[key]


def zero_totals(exp: Experiment, state: steps.LoopState, epoch: int):
  """The epoch's metric sums before its first step."""
  plan = phases.plan_at(exp.plans, epoch)
  return steps.zero_metrics(
      plan.phase.train_step, state.method, exp.image_shape, exp.config,
      plan.batch_size,
  )


def train_epoch(
    exp: Experiment,
    state: steps.LoopState,
    epoch: int,
    resume: dict[str, Any] | None = None,
    after_call: Callable | None = None,
) -> tuple[steps.LoopState, dict[str, Any]]:
  """Runs one (1-based) epoch; returns the state and the epoch's mean metrics.

  `resume` continues an epoch from a mid-epoch checkpoint (its position
  and running sums); `after_call(state, totals, position)` runs after every
  compiled call (the grain path's mid-epoch checkpoints).
  """
  config = exp.config
  plan = phases.plan_at(exp.plans, epoch)
  start = resume["step_in_epoch"] if resume else 0
  epoch_start = plan.first_step + (epoch - plan.first_epoch) * plan.steps_per_epoch
  learning_rate = float(exp.schedule(epoch_start))
  totals = resume["totals"] if resume else zero_totals(exp, state, epoch)
  calls = exp.feed.epoch_calls(plan, epoch, start,
                               resume["iterator"] if resume else None)
  with progress.EpochProgress(config, epoch, plan.steps_per_epoch, start,
                              plan.batch_size, calls) as bar:
    for num_steps, args in calls:
      state, totals = _train_fn(exp, plan, num_steps)(state, totals, *args)
      bar.advance(num_steps)
      if after_call is not None and bar.done < plan.steps_per_epoch:
        after_call(state, totals, {
            "epoch": epoch, "step_in_epoch": bar.done,
            "step": epoch_start + bar.done, "num_steps": num_steps,
            "iterator": calls.state})
  record = {"epoch": epoch, "step": int(state.step), "phase": plan.phase.name,
            "learning_rate": learning_rate}
  record.update(steps.epoch_means(
      jax.device_get(totals), plan.steps_per_epoch, plan.batch_size
  ))
  record.update(bar.rates())
  return state, record


def initial_best(exp: Experiment, state: steps.LoopState):
  """The hand-over slot: a state of the method's structure, or None."""
  return state.method if exp.method.warmup_phases() else None


def hand_over(
    exp: Experiment,
    state: steps.LoopState,
    best: Any,
    epoch: int,
    history: list[dict[str, Any]],
) -> tuple[steps.LoopState, Any]:
  """After an evaluated epoch: keep a warm-up's best state, end its phase.

  In a phase that hands over its best state, `best` is the method state of
  the phase's epoch of highest noisy-validation accuracy so far (the first
  on ties). After a phase's last epoch the state continues from `best`
  (for such a phase), then the phase's `on_end` runs.
  """
  plan = phases.plan_at(exp.plans, epoch)
  phase = plan.phase
  if phase.hands_over_best:
    earlier = [r["val_acc"] for r in history
               if plan.first_epoch <= r["epoch"] < epoch]
    if not earlier or history[-1]["val_acc"] > max(earlier):
      best = state.method
  if epoch == plan.last_epoch:
    if phase.hands_over_best:
      state = state._replace(method=best)
    if phase.on_end is not None:
      state = state._replace(method=phase.on_end(state.method, epoch_view(exp)))
  return state, best


def evaluate(exp: Experiment, state: steps.LoopState) -> dict[str, float | None]:
  """Accuracies on every split and the memorization rate."""
  preds = {name: np.argmax(exp.feed.predict(name, state.method), -1)
           for name in exp.feed.splits}
  return evaluation.accuracy_metrics(preds, exp.data)


def epoch_view(exp: Experiment) -> methods.EpochView:
  """What the method's end_epoch hook may see of the training split."""
  return methods.EpochView(
      train_labels=exp.data.train_labels,
      predict_train=lambda method_state: exp.feed.predict("train", method_state),
  )


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    dataset: data_lib.Dataset | None = None,
) -> dict[str, Any] | None:
  """Trains and evaluates one run; resumes from `workdir` if it has a checkpoint.

  Args:
    config: the experiment configuration (see configs/default.py).
    workdir: where metrics.jsonl, summary.json and checkpoints/ go.
    dataset: the loaded clean dataset, to reuse it across runs; loaded from
      the config when None.

  Returns:
    The summary (also written to summary.json), or None when the run stopped
    early because of `config.stop_after_epochs`.
  """
  exp, state = setup(config, dataset)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  with (ckpt.manager(workdir, config.checkpoints_to_keep) as checkpoints,
        mid_epoch.manager(workdir) as mid_checkpoints,
        contextlib.closing(exp.feed)):  # Grain workers started ahead.
    (state, best), history, _ = ckpt.restore(
        checkpoints, (state, initial_best(exp, state)), config
    )
    # Once the workdir is ours and holds this run (or none).
    atomic.write_json(os.path.join(workdir, "config.json"), run_config.as_dict(config))
    resume = mid_epoch.restore(mid_checkpoints, (state, best), config,
                               len(history))
    if resume:
      (state, best), resume = resume
      print(f"Resumed at step {resume['step_in_epoch']} of epoch "
            f"{resume['epoch']} in {workdir}.", flush=True)
    elif history:
      print(f"Resumed after epoch {len(history)} in {workdir}.", flush=True)
    atomic.write_jsonl(metrics_path, history)
    saver = (mid_epoch.Saver(mid_checkpoints, config.checkpoint_every_steps,
                             config) if config.checkpoint_every_steps else None)
    first_epoch = len(history) + 1
    for epoch in range(first_epoch, config.num_epochs + 1):
      if epoch - first_epoch == config.stop_after_epochs:
        checkpoints.wait_until_finished()
        print(f"Stopped after epoch {epoch - 1} (stop_after_epochs).", flush=True)
        return None
      start = time.perf_counter()
      if saver:
        saver.best, saver.history = best, history
      watch = divergence.Watch(saver.after_call if saver else None)
      state, record = train_epoch(exp, state, epoch, resume, watch.after_call)
      watch.check(state, record)  # Before anything of the epoch is saved.
      resume = None
      if exp.method.end_epoch is not None:
        state = state._replace(
            method=exp.method.end_epoch(state.method, epoch, epoch_view(exp))
        )
      record["train_time_s"] = time.perf_counter() - start
      record.update(evaluate(exp, state))
      record["epoch_time_s"] = time.perf_counter() - start
      history.append(record)
      state, best = hand_over(exp, state, best, epoch, history)
      print(evaluation.epoch_line(record, config.num_epochs), flush=True)
      # Metrics first: a kill between the two leaves one extra record, which
      # the resumption drops (the checkpoint's history is the truth).
      atomic.write_jsonl(metrics_path, history)
      ckpt.save(checkpoints, epoch, (state, best), history, config)
    checkpoints.wait_until_finished()
  return finish(exp, state, history, workdir)


def finish(
    exp: Experiment,
    state: steps.LoopState,
    history: list[dict[str, Any]],
    workdir: str,
) -> dict[str, Any]:
  """Writes summary.json (and the method's report); returns the summary."""
  summary = evaluation.summarize(
      exp.config, history, exp.data, exp.mesh.devices.size,
      warmup_phases=exp.method.warmup_phases(),
      batch_sizes={p.phase.name: p.batch_size for p in exp.plans
                   if p.phase.num_epochs},
  )
  if exp.method.report is not None:
    summary["method_report"] = evaluation.write_report(
        workdir, exp.method.report(jax.device_get(state.method))
    )
  summary["skipped_images"] = getattr(exp.feed, "skipped_images", 0)
  atomic.write_json(os.path.join(workdir, "summary.json"), summary)
  return summary
