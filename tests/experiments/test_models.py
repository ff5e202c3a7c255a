"""Tests for experiments.models: architectures, parameter counts, BatchNorm."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments import models
from experiments import train


def _abstract(name, input_shape, num_classes=10):
  """The model without allocating its parameters."""
  return nnx.eval_shape(
      lambda: models.create_model(
          name,
          input_shape=input_shape,
          num_classes=num_classes,
          rngs=nnx.Rngs(0),
      )
  )


# Jitted: running a model op by op compiles every op and is much slower.
_apply = jax.jit(train.apply_model, static_argnames=("graphdef", "train"))


def _num_params(model) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize(
    "name, input_shape, num_classes, expected",
    [
        # The counts of the PyTorch models of the reference code (kuangliu's
        # CIFAR ResNets), BatchNorm scales and biases included.
        ("lenet5", (28, 28, 1), 10, 61_706),
        ("mlp", (28, 28, 1), 10, 1_863_690),
        ("resnet18", (32, 32, 3), 10, 11_173_962),
        ("resnet34", (32, 32, 3), 10, 21_282_122),
        ("resnet50", (32, 32, 3), 10, 23_520_842),
        ("resnet50", (32, 32, 3), 100, 23_705_252),
        # 28x28 grayscale: only the stem's input channels change.
        ("resnet18", (28, 28, 1), 10, 11_173_962 - 2 * 9 * 64),
    ],
)
def test_parameter_counts(name, input_shape, num_classes, expected):
  assert _num_params(_abstract(name, input_shape, num_classes)) == expected


def test_lenet5_layers():
  model = _abstract("lenet5", (28, 28, 1))
  shapes = {
      path: x.shape
      for path, x in jax.tree_util.tree_leaves_with_path(
          nnx.to_pure_dict(nnx.state(model, nnx.Param))
      )
  }
  kernels = [s for s in shapes.values() if len(s) > 1]
  assert kernels == [(5, 5, 1, 6), (5, 5, 6, 16), (400, 120), (120, 84), (84, 10)]


@pytest.mark.parametrize(
    "name, input_shape",
    [
        ("lenet5", (28, 28, 1)),
        ("lenet5", (32, 32, 3)),
        ("mlp", (28, 28, 1)),
        ("resnet18", (28, 28, 1)),
        ("resnet34", (32, 32, 3)),
        ("resnet50", (32, 32, 3)),
    ],
)
def test_output_shapes(name, input_shape):
  def forward(x):
    model = models.create_model(
        name, input_shape=input_shape, num_classes=7, rngs=nnx.Rngs(0)
    )
    return model(x, train=True), model(x, train=False)

  x = jax.ShapeDtypeStruct((3, *input_shape), jnp.float32)
  for out in jax.eval_shape(forward, x):
    assert out.shape == (3, 7) and out.dtype == jnp.float32


def test_lenet5_forward_runs():
  model = models.create_model(
      "lenet5", input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(0)
  )
  graphdef, params = nnx.split(model)
  logits, _ = _apply(graphdef, params, {}, jnp.ones((2, 28, 28, 1)), train=False)
  assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))


def test_init_matches_torch_default_bounds():
  model = models.create_model(
      "lenet5", input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(0)
  )
  fc1_bound = 1 / math.sqrt(400)
  for leaf in (model.fc1.kernel[...], model.fc1.bias[...]):
    assert float(jnp.max(jnp.abs(leaf))) <= fc1_bound
    # Uniform, not normal: the extremes approach the bound.
    assert float(jnp.max(jnp.abs(leaf))) > 0.9 * fc1_bound


def test_max_pool_matches_reduce_window():
  x = jax.random.normal(jax.random.key(0), (2, 11, 10, 3))
  np.testing.assert_array_equal(
      models._max_pool2(x), nnx.max_pool(x, (2, 2), strides=(2, 2))
  )


def test_batch_norm_train_and_eval_modes():
  model = models.create_model(
      "resnet18", input_shape=(8, 8, 1), num_classes=3, rngs=nnx.Rngs(0)
  )
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  params, stats = nnx.to_pure_dict(params), nnx.to_pure_dict(stats)
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1)) * 3 + 2

  logits, new_stats = _apply(graphdef, params, stats, x, train=True)
  # Training mode updates the running statistics ...
  assert not np.allclose(
      new_stats["stem_bn"]["mean"], stats["stem_bn"]["mean"]
  )
  # ... and normalizes with the batch's own, not the running ones.
  logits_other_stats, _ = _apply(
      graphdef, params, new_stats, x, train=True
  )
  np.testing.assert_allclose(logits, logits_other_stats, rtol=1e-5, atol=1e-5)

  # Evaluation uses the running statistics and leaves them unchanged.
  eval_logits, eval_stats = _apply(
      graphdef, params, new_stats, x, train=False
  )
  jax.tree.map(np.testing.assert_array_equal, eval_stats, new_stats)
  assert not np.allclose(eval_logits, logits, atol=1e-3)
  # Per-example in evaluation: the batch composition does not matter.
  first, _ = _apply(graphdef, params, new_stats, x[:1], train=False)
  np.testing.assert_allclose(first, eval_logits[:1], rtol=1e-5, atol=1e-5)


def test_unknown_model():
  with pytest.raises(ValueError, match="Unknown model 'vgg'.*lenet5"):
    models.create_model(
        "vgg", input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(0)
    )
