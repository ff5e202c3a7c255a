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


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> jax.Array:
  """The example order of an epoch, a function of (seed, epoch) only."""
  key = jax.random.fold_in(jax.random.key(seed), _PERMUTATION_STREAM)
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)


def make_train_fn(
    train_step: methods.base.TrainStep,
    spec: DatasetSpec,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
    steps_per_epoch: int,
    num_steps: int,
) -> Callable:
  """Builds the jitted function that runs `num_steps` training steps.

  The function maps (state, totals, images, labels, perm) to (state, totals):
  `images`/`labels` are the whole training split on the devices, `perm` the
  epoch's permutation, and `totals` sums the step's metrics over the epoch
  without leaving the devices. With num_steps > 1 the steps run in a
  `lax.scan`, which is faster for dense nets on CPU and slower for conv nets.
  """
  batch_size = config.batch_size
  batch_sharding = NamedSharding(mesh, P("data"))
  augment_key = jax.random.fold_in(jax.random.key(config.seed), _AUGMENT_STREAM)

  def one_step(state: LoopState, totals, images, labels, perm):
    start = (state.step % steps_per_epoch) * batch_size
    indices = lax.dynamic_slice_in_dim(perm, start, batch_size)
    indices = lax.with_sharding_constraint(indices, batch_sharding)
    x = images[indices]
    if spec.augment:
      x = augment.random_crop_flip(jax.random.fold_in(augment_key, state.step), x)
    batch = methods.Batch(augment.normalize(x, spec), labels[indices], indices)
    info = methods.StepInfo(state.step, state.step // steps_per_epoch)
    method_state, metrics = train_step(state.method, batch, info)
    totals = jax.tree.map(lambda t, m: t + m.astype(t.dtype), totals, metrics)
    return LoopState(state.step + 1, method_state), totals

  def train_steps(state, totals, images, labels, perm):
    if num_steps == 1:
      return one_step(state, totals, images, labels, perm)

    def body(carry, _):
      return one_step(*carry, images, labels, perm), None

    (state, totals), _ = lax.scan(body, (state, totals), length=num_steps)
    return state, totals

  return jax.jit(train_steps, out_shardings=NamedSharding(mesh, P()))


def zero_metrics(step_fn, method_state, image_shape, config):
  """Zeroed epoch sums, with the structure of the step's metrics."""
  batch = config.batch_size
  scalar = jax.ShapeDtypeStruct((), jnp.int32)
  _, metrics = jax.eval_shape(
      step_fn,
      method_state,
      methods.Batch(
          jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32),
          jax.ShapeDtypeStruct((batch,), jnp.int32),
          jax.ShapeDtypeStruct((batch,), jnp.int32),
      ),
      methods.StepInfo(scalar, scalar),
  )
  # float32 sums, whatever each metric's dtype (counts included).
  return {k: jnp.zeros(v.shape, jnp.float32) for k, v in metrics.items()}
