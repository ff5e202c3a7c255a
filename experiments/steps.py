"""The compiled training step: batch from the permutation, then the method's step.

Around the method's `train_step` the loop adds what is the same for every
method: slicing the batch's indices from the epoch's permutation, gathering
the images on device, augmentation and normalization, the step counter, and
the epoch's running sums of the step's metrics.
"""

from typing import Any, Callable, NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections

from experiments import methods
from experiments.data import augment
from experiments.data import DatasetSpec

# Independent random streams derived from the seed.
INIT_STREAM = 0
_PERMUTATION_STREAM = 1
_AUGMENT_STREAM = 2


class LoopState(NamedTuple):
  """Everything that changes during training (and is checkpointed).

  Attributes:
    step: number of steps taken (int32 scalar); selects the batch within the
      epoch and the learning rate.
    method: the method's state (any pytree).
  """

  step: jax.Array
  method: Any


class TrainArrays(NamedTuple):
  """The training split on the devices.

  Attributes:
    images: uint8 ``(n, h, w, c)``.
    labels: int32 ``(n,)`` noisy labels.
    is_clean: bool ``(n,)``, whether each noisy label is the true one. Never
      shown to a method: the loop uses it only to report the label precision
      of the examples a method selects.
  """

  images: jax.Array
  labels: jax.Array
  is_clean: jax.Array


class FedBatch(NamedTuple):
  """One batch as it reaches the step: uint8 images (already augmented where
  the input path augments), noisy labels, dataset indices, and whether each
  label is the true one (for the label precision only; a method never sees
  it). The grain path feeds these from the host."""

  images: jax.Array
  labels: jax.Array
  indices: jax.Array
  is_clean: jax.Array


# A step may return this metric: a bool (B,) mask of the examples it trained
# on. The loop turns it into the epoch's selected fraction and label precision.
SELECTED = "selected"


def additive_metrics(metrics: dict, is_clean: jax.Array) -> dict:
  """A step's metrics as quantities that add up over the epoch's steps."""
  metrics = dict(metrics)
  if SELECTED in metrics:
    selected = metrics.pop(SELECTED)
    metrics["selected_count"] = jnp.sum(selected)
    # is_clean may be int8 with -1 for labels nobody verified (real noise):
    # the precision is over the selected examples whose status is known.
    metrics["selected_clean_count"] = jnp.sum(selected & (is_clean == 1))
    metrics["selected_known_count"] = jnp.sum(selected & (is_clean >= 0))
  return metrics


def epoch_means(totals: dict, steps: int, batch_size: int) -> dict[str, float]:
  """The epoch's metrics from their sums: means over steps, and the selection's
  fraction and label precision (clean fraction of the selected examples)."""
  totals = {k: float(v) for k, v in totals.items()}
  selected = totals.pop("selected_count", None)
  clean = totals.pop("selected_clean_count", None)
  known = totals.pop("selected_known_count", None)
  means = {k: v / steps for k, v in totals.items()}
  if selected is not None:
    means["selected_fraction"] = selected / (steps * batch_size)
    means["label_precision"] = clean / known if known else None
  return means


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> jax.Array:
  """The example order of an epoch, a function of (seed, epoch) only."""
  key = jax.random.fold_in(jax.random.key(seed), _PERMUTATION_STREAM)
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)


def augment_key(seed: int) -> jax.Array:
  """The run's augmentation randomness, a function of its seed only."""
  return jax.random.fold_in(jax.random.key(seed), _AUGMENT_STREAM)


def make_train_steps(
    train_step: methods.base.TrainStep,
    spec: DatasetSpec,
    batch_size: int,
    mesh: jax.sharding.Mesh,
    steps_per_epoch: int,
    num_steps: int,
    first_step: int = 0,
    first_epoch: int = 0,
) -> Callable:
  """The (unjitted) function that runs `num_steps` training steps of one run.

  The batch's position in its epoch and the epoch count from the phase's
  start: `first_step` steps and `first_epoch` (0-based) epochs precede it,
  so a phase whose batch size (and hence `steps_per_epoch`) differs from the
  earlier phases' still starts each epoch at the head of its permutation.

  It maps (state, totals, arrays, perm, augment_key) to (state, totals):
  `arrays` is the whole training split on the devices (`TrainArrays`), `perm`
  the epoch's permutation, and `totals` sums the step's metrics over the epoch
  without leaving the devices. With num_steps > 1 the steps run in a
  `lax.scan`, which is faster on CPU for dense layers and LeNet-5's matmul
  convolutions, and slower for `lax.conv_general_dilated`.
  Every argument is per run, so `jax.vmap` trains several runs at once
  (experiments/many_runs.py).
  """
  batch_sharding = NamedSharding(mesh, P("data"))
  step = _make_step(train_step, spec, steps_per_epoch, first_step, first_epoch)

  def one_step(state: LoopState, totals, arrays: TrainArrays, perm, augment_key):
    start = ((state.step - first_step) % steps_per_epoch) * batch_size
    indices = lax.dynamic_slice_in_dim(perm, start, batch_size)
    indices = lax.with_sharding_constraint(indices, batch_sharding)
    x = arrays.images[indices]
    if spec.augment:
      x = augment.random_crop_flip(jax.random.fold_in(augment_key, state.step), x)
    return step(state, totals, FedBatch(
        x, arrays.labels[indices], indices, arrays.is_clean[indices]
    ))

  def train_steps(state, totals, arrays, perm, augment_key):
    if num_steps == 1:
      return one_step(state, totals, arrays, perm, augment_key)

    def body(carry, _):
      return one_step(*carry, arrays, perm, augment_key), None

    (state, totals), _ = lax.scan(body, (state, totals), length=num_steps)
    return state, totals

  return train_steps


def _make_step(train_step, spec, steps_per_epoch, first_step, first_epoch):
  """(state, totals, FedBatch) -> (state, totals): normalization, the
  method's step and the epoch sums; the same for both input paths."""

  def step(state: LoopState, totals, batch: FedBatch):
    in_phase = state.step - first_step
    info = methods.StepInfo(
        state.step, first_epoch + in_phase // steps_per_epoch
    )
    method_state, metrics = train_step(
        state.method,
        methods.Batch(augment.normalize(batch.images, spec), batch.labels,
                      batch.indices),
        info,
    )
    metrics = additive_metrics(metrics, batch.is_clean)
    totals = jax.tree.map(lambda t, m: t + m.astype(t.dtype), totals, metrics)
    return LoopState(state.step + 1, method_state), totals

  return step


def make_fed_train_fn(
    train_step: methods.base.TrainStep,
    spec: DatasetSpec,
    mesh: jax.sharding.Mesh,
    steps_per_epoch: int,
    num_steps: int,
    first_step: int = 0,
    first_epoch: int = 0,
) -> Callable:
  """The jitted (state, totals, batches) -> (state, totals) of the grain path.

  `batches` is a `FedBatch` whose arrays have a leading axis of `num_steps`
  (the batches of one call, sharded over 'data' along the batch axis); the
  steps run in a `lax.scan` when there are several, as on the device path.
  """
  step = _make_step(train_step, spec, steps_per_epoch, first_step, first_epoch)

  def train_steps(state, totals, batches: FedBatch):
    if num_steps == 1:
      return step(state, totals, jax.tree.map(lambda b: b[0], batches))
    (state, totals), _ = lax.scan(
        lambda carry, batch: (step(*carry, batch), None), (state, totals),
        batches,
    )
    return state, totals

  return jax.jit(train_steps, out_shardings=NamedSharding(mesh, P()))


def make_train_fn(
    train_step: methods.base.TrainStep,
    spec: DatasetSpec,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
    steps_per_epoch: int,
    num_steps: int,
    batch_size: int | None = None,
    first_step: int = 0,
    first_epoch: int = 0,
) -> Callable:
  """The jitted (state, totals, arrays, perm) -> (state, totals) of one run.

  `batch_size` defaults to config.batch_size; see `make_train_steps`.
  """
  train_steps = make_train_steps(
      train_step, spec, batch_size or config.batch_size, mesh,
      steps_per_epoch, num_steps, first_step, first_epoch,
  )
  key = augment_key(config.seed)
  return jax.jit(
      lambda state, totals, arrays, perm: train_steps(
          state, totals, arrays, perm, key
      ),
      out_shardings=NamedSharding(mesh, P()),
  )


def zero_metrics(step_fn, method_state, image_shape, config, batch_size=None):
  """Zeroed epoch sums, with the structure of the step's metrics."""
  batch = batch_size or config.batch_size
  scalar = jax.ShapeDtypeStruct((), jnp.int32)
  def additive(state, batch, info, is_clean):
    return additive_metrics(step_fn(state, batch, info)[1], is_clean)

  metrics = jax.eval_shape(
      additive,
      method_state,
      methods.Batch(
          jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32),
          jax.ShapeDtypeStruct((batch,), jnp.int32),
          jax.ShapeDtypeStruct((batch,), jnp.int32),
      ),
      methods.StepInfo(scalar, scalar),
      jax.ShapeDtypeStruct((batch,), jnp.bool_),
  )
  # float32 sums, whatever each metric's dtype (counts included).
  return {k: jnp.zeros(v.shape, jnp.float32) for k, v in metrics.items()}
