"""Training and evaluation loop for learning with noisy labels.

`train_and_evaluate(config, workdir)` trains one model with one method on one
noisy dataset and follows the CDR paper's protocol: after every epoch it
evaluates the accuracy on the noisy validation set and on the clean test set,
and the reported result is the test accuracy at the epoch of best validation
accuracy (the first such epoch on ties).

Design notes:

* The whole dataset (uint8) is put on the devices once. Every epoch draws a
  permutation with `jax.random.permutation`; the jitted step slices its
  batch's indices from the permutation at `step % steps_per_epoch` and
  gathers the images on device, so no data crosses the host per step.
* Every epoch has `num_train // batch_size` steps: the last partial batch is
  dropped (torch's DataLoader would keep it). Dropping it keeps one compiled
  step shape and the batch divisible by the number of devices; at most
  batch_size - 1 examples per epoch are skipped, and a different set each
  epoch.
* Data parallelism: a 1-D mesh over the local devices ('data'); the batch is
  sharded along it, parameters, optimizer state and the dataset are
  replicated, and XLA inserts the gradient all-reduce. BatchNorm statistics
  are then over the global batch, so any device count computes the same
  step (up to float reassociation). The same code runs on CPU, GPU and TPU.
* Randomness is derived from (seed, stream, epoch or step) with `fold_in`,
  never carried, so a run resumed from a checkpoint is bit-identical to an
  uninterrupted one.
* The checkpoint (orbax, every epoch) holds the training state and the
  per-epoch metrics so far. On resume `metrics.jsonl` is rewritten from it,
  so epochs that ran after the last checkpoint are neither lost nor
  duplicated.
"""

import json
import os
import statistics
import sys
import time
from typing import Any, Callable, NamedTuple

from absl import logging
import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
import tqdm

from experiments import input_pipeline
from experiments import methods
from experiments import models
from experiments import noise

# Independent random streams derived from the seed.
_INIT_STREAM = 0
_PERMUTATION_STREAM = 1
_AUGMENT_STREAM = 2


class TrainState(NamedTuple):
  """Everything that changes during training (and is checkpointed).

  Attributes:
    step: number of steps taken (int32 scalar); also selects the batch within
      the epoch and the learning rate.
    params: trainable parameters, a nested dict of arrays.
    batch_stats: BatchNorm running statistics (empty for models without).
    opt_state: optimizer state.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: optax.OptState


class DeviceSplit(NamedTuple):
  """A split on the devices, padded to a multiple of the evaluation batch.

  Attributes:
    images: uint8 (num_padded, h, w, c); the padding is zeros.
    labels: int32 (num_padded,) noisy (train/val) or clean (test) labels.
    size: number of real examples (a Python int).
  """

  images: jax.Array
  labels: jax.Array
  size: int


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError, naming the field, for a config that cannot run.

  Args:
    config: the experiment configuration.
    num_devices: number of devices the run will use.
  """
  input_pipeline.canonical_name(config.dataset)  # Raises for unknown names.
  methods.get_method(config.method)
  if config.model not in models.MODELS:
    raise ValueError(
        f"Unknown model {config.model!r}; expected one of {models.MODELS}."
    )
  noise_types = (*noise.NOISE_TYPES, noise.CLEAN)
  if config.noise_type not in noise_types:
    raise ValueError(
        f"Unknown noise_type {config.noise_type!r}; expected one of "
        f"{noise_types}."
    )
  if not 0.0 <= config.noise_rate < 1.0:
    raise ValueError(f"noise_rate must be in [0, 1), got {config.noise_rate}.")
  if config.cdr_tau is not None and not 0.0 <= config.cdr_tau < 1.0:
    raise ValueError(f"cdr_tau must be in [0, 1), got {config.cdr_tau}.")
  if config.cdr_lam < 0:
    raise ValueError(f"cdr_lam must be >= 0, got {config.cdr_lam}.")
  for field in ("batch_size", "eval_batch_size"):
    size = config[field]
    if size < 1 or size % num_devices:
      raise ValueError(
          f"{field}={size} must be positive and divisible by the number of "
          f"devices ({num_devices})."
      )
  for field in ("num_epochs", "steps_per_call", "checkpoints_to_keep"):
    if config[field] < 1:
      raise ValueError(f"{field} must be >= 1, got {config[field]}.")
  milestones = list(config.lr_milestones)
  if any(m < 0 for m in milestones) or milestones != sorted(set(milestones)):
    raise ValueError(
        "lr_milestones must be increasing non-negative epochs, got "
        f"{config.lr_milestones}."
    )


def make_mesh(num_devices: int | None) -> jax.sharding.Mesh:
  """A 1-D 'data' mesh over the first `num_devices` local devices (None: all)."""
  devices = jax.local_devices()
  if num_devices is not None:
    if not 1 <= num_devices <= len(devices):
      raise ValueError(
          f"num_devices={num_devices}, but {len(devices)} local devices exist."
      )
    devices = devices[:num_devices]
  return jax.make_mesh(
      (len(devices),),
      ("data",),
      axis_types=(jax.sharding.AxisType.Auto,),
      devices=devices,
  )


def learning_rate_schedule(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.Schedule:
  """Base rate, times `lr_decay` from the first step of each milestone epoch."""
  return optax.piecewise_constant_schedule(
      config.learning_rate,
      {int(m) * steps_per_epoch: config.lr_decay for m in config.lr_milestones},
  )


def create_train_state(
    config: ml_collections.ConfigDict,
    input_shape: tuple[int, ...],
    num_classes: int,
    tx: optax.GradientTransformation,
) -> tuple[nnx.GraphDef, TrainState]:
  """Initializes the model and optimizer.

  Returns:
    The model's graph definition (static structure, used with `nnx.merge`)
    and the initial state. Parameters are plain nested dicts so that optax,
    orbax and `jax.tree` treat them as ordinary pytrees.
  """
  key = jax.random.fold_in(jax.random.key(config.seed), _INIT_STREAM)
  model = models.create_model(
      config.model,
      input_shape=input_shape,
      num_classes=num_classes,
      rngs=nnx.Rngs(params=key),
      mlp_hidden=config.mlp_hidden,
  )
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  params = nnx.to_pure_dict(params)
  batch_stats = nnx.to_pure_dict(batch_stats)
  state = TrainState(
      step=jnp.zeros([], jnp.int32),
      params=params,
      batch_stats=batch_stats,
      opt_state=tx.init(params),
  )
  return graphdef, state


def apply_model(graphdef, params, batch_stats, images, *, train: bool):
  """Runs the model; returns (logits, updated BatchNorm statistics)."""
  model = nnx.merge(graphdef, params, batch_stats)
  logits = model(images, train=train)
  return logits, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> jax.Array:
  """The example order of an epoch, a function of (seed, epoch) only."""
  key = jax.random.fold_in(jax.random.key(seed), _PERMUTATION_STREAM)
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)


def _replicated(mesh):
  return NamedSharding(mesh, P())


def _batch_sharded(mesh):
  return NamedSharding(mesh, P("data"))


def make_train_fn(
    graphdef: nnx.GraphDef,
    method: methods.Method,
    tx: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
    steps_per_epoch: int,
    num_steps: int,
) -> Callable:
  """Builds the jitted function that runs `num_steps` training steps.

  The function maps (state, totals, images, labels, perm) to (state, totals):
  `images`/`labels` are the whole training split on the devices, `perm` the
  epoch's permutation, and `totals` sums per-step metrics (loss, correct
  predictions on the noisy labels, the method's optimizer metrics) over the
  epoch without leaving the devices. With num_steps > 1 the steps run in a
  `lax.scan`, which is faster for dense nets on CPU and slower for conv nets.

  Args:
    graphdef: the model's graph definition.
    method: the training method (loss, metrics).
    tx: the optimizer.
    config: the experiment configuration.
    mesh: the device mesh.
    steps_per_epoch: number of steps in an epoch.
    num_steps: steps per call.

  Returns:
    The jitted function.
  """
  batch_size = config.batch_size
  augment = input_pipeline.uses_augmentation(config.dataset)
  batch_sharding = _batch_sharded(mesh)
  augment_key = jax.random.fold_in(jax.random.key(config.seed), _AUGMENT_STREAM)

  def train_step(state: TrainState, totals, images, labels, perm):
    start = (state.step % steps_per_epoch) * batch_size
    indices = lax.dynamic_slice_in_dim(perm, start, batch_size)
    indices = lax.with_sharding_constraint(indices, batch_sharding)
    x = images[indices]
    y = labels[indices]
    if augment:
      x = input_pipeline.random_crop_flip(
          jax.random.fold_in(augment_key, state.step), x
      )
    x = input_pipeline.normalize(x, config.dataset)

    def loss_fn(params):
      logits, batch_stats = apply_model(
          graphdef, params, state.batch_stats, x, train=True
      )
      return method.loss(logits, y, indices), (logits, batch_stats)

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(
        loss_fn, has_aux=True
    )(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = TrainState(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        batch_stats=batch_stats,
        opt_state=opt_state,
    )
    step_metrics = {
        "loss": loss,
        "correct": jnp.sum(jnp.argmax(logits, -1) == y),
        **method.optimizer_metrics(opt_state),
    }
    return new_state, jax.tree.map(jnp.add, totals, step_metrics)

  def train_steps(state, totals, images, labels, perm):
    if num_steps == 1:
      return train_step(state, totals, images, labels, perm)

    def body(carry, _):
      return train_step(*carry, images, labels, perm), None

    (state, totals), _ = lax.scan(body, (state, totals), length=num_steps)
    return state, totals

  return jax.jit(train_steps, out_shardings=_replicated(mesh))


def zero_totals(method: methods.Method, opt_state: optax.OptState):
  """Zeroed epoch sums of the metrics that each training step adds."""
  optimizer_metrics = jax.eval_shape(method.optimizer_metrics, opt_state)
  return {
      "loss": jnp.zeros([], jnp.float32),
      "correct": jnp.zeros([], jnp.int32),
      **{k: jnp.zeros(v.shape, v.dtype) for k, v in optimizer_metrics.items()},
  }


def make_predict_fn(
    graphdef: nnx.GraphDef,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
) -> Callable:
  """Jitted (state, images, start) -> predicted classes of one eval batch."""
  batch_sharding = _batch_sharded(mesh)

  def predict(state: TrainState, images, start):
    x = lax.dynamic_slice_in_dim(images, start, config.eval_batch_size)
    x = lax.with_sharding_constraint(x, batch_sharding)
    x = input_pipeline.normalize(x, config.dataset)
    logits, _ = apply_model(
        graphdef, state.params, state.batch_stats, x, train=False
    )
    return jnp.argmax(logits, -1)

  return jax.jit(predict)


def predict_split(predict_fn, state, split: DeviceSplit, batch_size: int):
  """Predicted classes of every example of a split, as a numpy array."""
  preds = [
      predict_fn(state, split.images, start)
      for start in range(0, split.images.shape[0], batch_size)
  ]
  return np.concatenate(jax.device_get(preds))[: split.size]


def to_device(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    mesh: jax.sharding.Mesh,
) -> DeviceSplit:
  """Pads a split to a multiple of `batch_size` and replicates it on `mesh`."""
  pad = -len(labels) % batch_size
  images = np.pad(images, ((0, pad),) + ((0, 0),) * (images.ndim - 1))
  labels = np.pad(labels, (0, pad))
  images, labels = jax.device_put((images, labels), _replicated(mesh))
  return DeviceSplit(images, labels, size=len(labels) - pad)


def accuracy_metrics(
    preds: dict[str, np.ndarray], data: input_pipeline.NoisyDataset
) -> dict[str, float | None]:
  """Accuracies and memorization from the predictions on each split.

  Args:
    preds: predicted classes for "train", "val" and "test".
    data: the noisy dataset (noisy and clean labels).

  Returns:
    train_acc / val_acc: accuracy on the noisy labels (what the model was
    fit to / selected on); train_clean_acc / val_clean_acc: on the true
    labels; test_acc: clean test accuracy; memorization: fraction of the
    mislabeled training examples predicted as their wrong (noisy) label;
    mislabeled_correct: fraction of them predicted as their true label.
    The last two are None without mislabeled examples.
  """
  train = preds["train"]
  flipped = data.train_labels != data.train_clean_labels
  mean = lambda x: float(np.mean(x)) if x.size else None
  return {
      "train_acc": mean(train == data.train_labels),
      "train_clean_acc": mean(train == data.train_clean_labels),
      "memorization": mean(train[flipped] == data.train_labels[flipped]),
      "mislabeled_correct": mean(
          train[flipped] == data.train_clean_labels[flipped]
      ),
      "val_acc": mean(preds["val"] == data.val_labels),
      "val_clean_acc": mean(preds["val"] == data.val_clean_labels),
      "test_acc": mean(preds["test"] == data.test_labels),
  }


def summarize(
    config: ml_collections.ConfigDict,
    history: list[dict[str, Any]],
    data: input_pipeline.NoisyDataset,
    num_devices: int,
) -> dict[str, Any]:
  """The run's result from its per-epoch metrics (the paper's protocol).

  The best epoch is the first epoch of highest noisy-validation accuracy;
  the reported number is the test accuracy at that epoch.
  """
  best = max(history, key=lambda r: r["val_acc"])  # max keeps the first.
  epoch_times = [r["epoch_time_s"] for r in history]
  return {
      "config": config.to_dict(),
      "dataset": data.name,
      "model": config.model,
      "method": config.method,
      "noise_type": config.noise_type,
      "noise_rate": config.noise_rate,
      "seed": config.seed,
      "realized_noise_rate": data.realized_rate,
      "num_train": len(data.train_labels),
      "num_val": len(data.val_labels),
      "num_test": len(data.test_labels),
      "epochs": len(history),
      "best_epoch": best["epoch"],
      "best_val_acc": best["val_acc"],
      "test_acc_at_best_val": best["test_acc"],
      "last_test_acc": history[-1]["test_acc"],
      "max_test_acc": max(r["test_acc"] for r in history),
      "last_memorization": history[-1]["memorization"],
      # The first epoch of each process includes compilation: the median is
      # the steady-state cost.
      "seconds_per_epoch_median": statistics.median(epoch_times),
      "seconds_per_epoch_mean": statistics.fmean(epoch_times),
      "num_devices": num_devices,
      "platform": jax.default_backend(),
  }


def write_atomic(path: str, text: str) -> None:
  """Writes a file so that readers see the old or the new content, never half."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_metrics(workdir: str, history: list[dict[str, Any]]) -> None:
  write_atomic(
      os.path.join(workdir, "metrics.jsonl"),
      "".join(json.dumps(r) + "\n" for r in history),
  )


def load_data(
    config: ml_collections.ConfigDict,
    dataset: input_pipeline.Dataset | None = None,
) -> input_pipeline.NoisyDataset:
  """Loads the dataset (unless given) and applies the configured noise."""
  if dataset is None:
    dataset = input_pipeline.load_dataset(
        config.dataset, source=config.data_source, data_dir=config.data_dir
    )
  return input_pipeline.make_noisy_dataset(
      dataset,
      config.noise_type,
      config.noise_rate,
      config.seed,
      val_fraction=config.val_fraction,
  )


def _progress_bar(config, epoch: int, total: int) -> tqdm.tqdm:
  return tqdm.tqdm(
      total=total,
      desc=f"epoch {epoch}",
      unit="step",
      leave=False,
      disable=not (config.log_progress and sys.stderr.isatty()),
  )


# Fields that may differ between a checkpointed run and its resumption: they
# change how the run executes or where data is read, not what it computes.
RESUMABLE_CHANGES = frozenset({
    "num_epochs",
    "stop_after_epochs",
    "log_progress",
    "checkpoints_to_keep",
    "data_source",
    "data_dir",
    "num_devices",
    "eval_batch_size",
})


def config_differences(saved: dict[str, Any], config: ml_collections.ConfigDict):
  """Fields (outside RESUMABLE_CHANGES) whose values differ, as strings."""
  current = json.loads(json.dumps(config.to_dict()))
  return [
      f"{k}: {saved.get(k)!r} -> {current.get(k)!r}"
      for k in sorted(saved.keys() | current.keys())
      if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k)
  ]


class Experiment(NamedTuple):
  """What a run needs besides its state: data, compiled functions, settings."""

  config: ml_collections.ConfigDict
  method: methods.Method
  data: input_pipeline.NoisyDataset
  splits: dict[str, DeviceSplit]
  schedule: optax.Schedule
  steps_per_epoch: int
  # Steps per call of each call in an epoch, and the function for each size.
  calls: list[int]
  train_fns: dict[int, Callable]
  predict_fn: Callable
  mesh: jax.sharding.Mesh


def setup(
    config: ml_collections.ConfigDict,
    dataset: input_pipeline.Dataset | None = None,
) -> tuple[Experiment, TrainState]:
  """Validates the config, loads the data and builds the model and functions."""
  mesh = make_mesh(config.num_devices)
  validate_config(config, mesh.devices.size)
  method = methods.get_method(config.method)
  data = load_data(config, dataset)
  steps_per_epoch = len(data.train_labels) // config.batch_size
  if steps_per_epoch == 0:
    raise ValueError(
        f"batch_size={config.batch_size} exceeds the {len(data.train_labels)} "
        "training examples."
    )
  schedule = learning_rate_schedule(config, steps_per_epoch)
  tx = method.optimizer(config, schedule)
  graphdef, state = create_train_state(
      config, data.train_images.shape[1:], data.num_classes, tx
  )
  state = jax.device_put(state, _replicated(mesh))
  chunk = min(config.steps_per_call, steps_per_epoch)
  remainder = steps_per_epoch % chunk
  calls = [chunk] * (steps_per_epoch // chunk) + [remainder] * (remainder > 0)
  batch = config.eval_batch_size
  experiment = Experiment(
      config=config,
      method=method,
      data=data,
      splits={
          "train": to_device(data.train_images, data.train_labels, batch, mesh),
          "val": to_device(data.val_images, data.val_labels, batch, mesh),
          "test": to_device(data.test_images, data.test_labels, batch, mesh),
      },
      schedule=schedule,
      steps_per_epoch=steps_per_epoch,
      calls=calls,
      train_fns={
          n: make_train_fn(graphdef, method, tx, config, mesh, steps_per_epoch, n)
          for n in set(calls)
      },
      predict_fn=make_predict_fn(graphdef, config, mesh),
      mesh=mesh,
  )
  return experiment, state


def train_epoch(
    exp: Experiment, state: TrainState, epoch: int
) -> tuple[TrainState, dict[str, float]]:
  """Runs one epoch of training; returns the state and its running metrics."""
  config, steps = exp.config, exp.steps_per_epoch
  learning_rate = float(exp.schedule(int(state.step)))
  perm = jax.device_put(
      epoch_permutation(config.seed, epoch, exp.splits["train"].size),
      _replicated(exp.mesh),
  )
  totals = zero_totals(exp.method, state.opt_state)
  split = exp.splits["train"]
  with _progress_bar(config, epoch, steps) as bar:
    for num_steps in exp.calls:
      state, totals = exp.train_fns[num_steps](
          state, totals, split.images, split.labels, perm
      )
      bar.update(num_steps)
  totals = jax.device_get(totals)
  return state, {
      "epoch": epoch,
      "step": int(state.step),
      "learning_rate": learning_rate,
      "train_loss": float(totals.pop("loss")) / steps,
      # On the noisy labels, as the weights changed during the epoch.
      "train_running_acc": float(totals.pop("correct"))
      / (steps * config.batch_size),
      # The method's optimizer metrics (CDR's critical_fraction): mean over
      # the epoch's steps.
      **{k: float(v) / steps for k, v in totals.items()},
  }


def evaluate(exp: Experiment, state: TrainState) -> dict[str, float | None]:
  """Accuracies on every split and the memorization rate (see accuracy_metrics)."""
  preds = {
      name: predict_split(exp.predict_fn, state, split, exp.config.eval_batch_size)
      for name, split in exp.splits.items()
  }
  return accuracy_metrics(preds, exp.data)


def _checkpoint_args(state, history, config):
  return ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      history=ocp.args.JsonSave(history),
      config=ocp.args.JsonSave(config.to_dict()),
  )


def restore(
    checkpoints: ocp.CheckpointManager,
    state: TrainState,
    config: ml_collections.ConfigDict,
) -> tuple[TrainState, list[dict[str, Any]]]:
  """The latest checkpoint's state and metrics; (state, []) if there is none.

  Raises:
    ValueError: if the checkpointed run had a different configuration.
  """
  step = checkpoints.latest_step()
  if step is None:
    return state, []
  # The config first: another model or optimizer would not even restore.
  saved = checkpoints.restore(
      step, args=ocp.args.Composite(config=ocp.args.JsonRestore())
  ).config
  if differences := config_differences(saved, config):
    raise ValueError(
        f"{checkpoints.directory} holds a run with another configuration "
        f"({'; '.join(differences)}). Use another workdir, or delete it."
    )
  restored = checkpoints.restore(
      step,
      args=ocp.args.Composite(
          state=ocp.args.StandardRestore(
              jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
          ),
          history=ocp.args.JsonRestore(),
      ),
  )
  return restored.state, list(restored.history)


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    dataset: input_pipeline.Dataset | None = None,
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
  os.makedirs(workdir, exist_ok=True)
  with ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints"),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=config.checkpoints_to_keep, create=True
      ),
  ) as checkpoints:
    state, history = restore(checkpoints, state, config)
    if history:
      logging.info("Resumed after epoch %d in %s.", len(history), workdir)
    write_metrics(workdir, history)
    first_epoch = len(history) + 1
    for epoch in range(first_epoch, config.num_epochs + 1):
      if epoch - first_epoch == config.stop_after_epochs:
        checkpoints.wait_until_finished()
        logging.info("Stopped after epoch %d (stop_after_epochs).", epoch - 1)
        return None
      start = time.perf_counter()
      state, record = train_epoch(exp, state, epoch)
      record["train_time_s"] = time.perf_counter() - start
      record.update(evaluate(exp, state))
      record["epoch_time_s"] = time.perf_counter() - start
      history.append(record)
      logging.info(
          "epoch %d: loss %.4f, val %.4f, test %.4f, memorized %s, %.1f s",
          epoch,
          record["train_loss"],
          record["val_acc"],
          record["test_acc"],
          record["memorization"],
          record["epoch_time_s"],
      )
      # Metrics first: a kill between the two leaves one extra record, which
      # the resumption drops (the checkpoint's history is the truth).
      write_metrics(workdir, history)
      checkpoints.save(epoch, args=_checkpoint_args(state, history, config))
    checkpoints.wait_until_finished()
  summary = summarize(config, history, exp.data, exp.mesh.devices.size)
  write_atomic(
      os.path.join(workdir, "summary.json"), json.dumps(summary, indent=2) + "\n"
  )
  return summary
