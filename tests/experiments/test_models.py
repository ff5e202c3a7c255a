"""Tests for experiments.models: architectures, parameter counts, BatchNorm,
the ResNet stem and the pure-function `network` view."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments import matmul_conv
from experiments import models


def _abstract(name, input_shape, num_classes=10, **kwargs):
  """The model without allocating its parameters."""
  return nnx.eval_shape(
      lambda: models.create_model(
          name,
          input_shape=input_shape,
          num_classes=num_classes,
          rngs=nnx.Rngs(0),
          **kwargs,
      )
  )


@functools.cache
def _jitted_network(name, input_shape, num_classes):
  """`models.network` with a jitted apply, shared by the tests.

  Jitted: running a model op by op compiles every op and is much slower;
  shared: tests that use the same network and shapes compile it once.
  """
  net = models.network(name, input_shape=input_shape, num_classes=num_classes)
  return net.init, jax.jit(net.apply, static_argnames="train")


def _size(tree) -> int:
  """Number of entries; leaves may be abstract (`jax.ShapeDtypeStruct`)."""
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _num_params(model) -> int:
  return _size(nnx.state(model, nnx.Param))


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
        ("resnet18", (32, 32, 3)),
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
  init, apply = _jitted_network("lenet5", (28, 28, 1), 10)
  params, stats = init(jax.random.key(0))
  logits, _ = apply(params, stats, jnp.ones((4, 28, 28, 1)), train=False)
  assert logits.shape == (4, 10) and bool(jnp.all(jnp.isfinite(logits)))


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


@pytest.mark.parametrize(
    "image, kernel, strides, padding",
    [
        ((3, 28, 28, 1), (5, 5, 1, 6), (1, 1), ((2, 2), (2, 2))),  # LeNet conv1
        ((3, 14, 14, 6), (5, 5, 6, 16), (1, 1), ((0, 0), (0, 0))),  # LeNet conv2
        ((2, 9, 8, 3), (3, 3, 3, 4), (2, 2), ((1, 1), (1, 1))),
        ((2, 7, 7, 2), (1, 1, 2, 5), (2, 1), ((0, 0), (0, 1))),
        ((2, 9, 11, 2), (3, 2, 2, 3), (3, 2), ((2, 0), (1, 2))),  # kh != kw
    ],
)
def test_conv_as_matmul_is_the_convolution(image, kernel, strides, padding):
  x = jax.random.normal(jax.random.key(0), image)
  w = jax.random.normal(jax.random.key(1), kernel)
  conv = functools.partial(
      jax.lax.conv_general_dilated,
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST,
  )
  ours = functools.partial(matmul_conv.conv_as_matmul,
                           precision=jax.lax.Precision.HIGHEST)
  np.testing.assert_allclose(ours(x, w, strides, padding),
                             conv(x, w, strides, padding), rtol=1e-5, atol=1e-5)
  # And their gradients, which are what training uses.
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w, strides, padding)))
  for a, b in zip(jax.grad(loss(ours), (0, 1))(x, w),
                  jax.grad(loss(conv), (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())


def test_conv_as_matmul_under_vmap_is_a_batched_matmul():
  """Per-run kernels: no grouped convolution in the compiled program."""
  x = jnp.ones((4, 2, 14, 14, 6))
  w = jnp.ones((4, 5, 5, 6, 16))
  f = jax.vmap(lambda x, w: matmul_conv.conv_as_matmul(x, w, (1, 1), ((0, 0),) * 2))
  hlo = jax.jit(f).lower(x, w).as_text()
  assert "convolution" not in hlo
  assert "dot_general" in hlo


@pytest.mark.parametrize("kwargs, message", [
    (dict(feature_group_count=2), "no feature_group_count"),
    (dict(lhs_dilation=(2, 1)), "no lhs_dilation"),
    (dict(rhs_dilation=(1, 2)), "no rhs_dilation"),
    (dict(batch_group_count=2), "no batch_group_count"),
    (dict(preferred_element_type=jnp.float64), "no preferred_element_type"),
    (dict(dimension_numbers=("NCHW", "OIHW", "NCHW")), "NHWC inputs and HWIO"),
    (dict(padding="SAME"), "explicit padding pairs"),
])
def test_conv_as_matmul_rejects_what_it_does_not_compute(kwargs, message):
  x, w = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 2))
  padding = kwargs.pop("padding", ((0, 0),) * 2)
  with pytest.raises(ValueError, match=message):
    matmul_conv.conv_as_matmul(x, w, (1, 1), padding, **kwargs)
  # Their defaults are accepted, as nnx.Conv passes them.
  matmul_conv.conv_as_matmul(x, w, (1, 1), ((0, 0),) * 2, lhs_dilation=(1, 1),
                        rhs_dilation=None, feature_group_count=1,
                        preferred_element_type=None, out_sharding=None,
                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_batch_norm_train_and_eval_modes():
  init, apply = _jitted_network("resnet18", (8, 8, 1), 3)
  params, stats = init(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1)) * 3 + 2

  logits, new_stats = apply(params, stats, x, train=True)
  # Training mode updates the running statistics of every BatchNorm ...
  changed = jax.tree.map(
      lambda new, old: not np.allclose(new, old), new_stats, stats
  )
  assert all(jax.tree.leaves(changed))
  # ... and normalizes with the batch's own, not the running ones.
  logits_other_stats, _ = apply(params, new_stats, x, train=True)
  np.testing.assert_allclose(logits, logits_other_stats, rtol=1e-5, atol=1e-5)

  # Evaluation uses the running statistics and leaves them unchanged.
  eval_logits, eval_stats = apply(params, new_stats, x, train=False)
  jax.tree.map(np.testing.assert_array_equal, eval_stats, new_stats)
  assert not np.allclose(eval_logits, logits, atol=1e-3)
  # Per-example in evaluation: the batch composition does not matter.
  first, _ = apply(params, new_stats, x[:1], train=False)
  np.testing.assert_allclose(first, eval_logits[:1], rtol=1e-5, atol=1e-5)


def test_unknown_model():
  with pytest.raises(ValueError, match="Unknown model 'vgg'.*lenet5"):
    models.create_model(
        "vgg", input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(0)
    )


# ---------------------------------------------------------------------------
# ResNet stem: 3x3, stride 1, padding 0 as in the reference code
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "input_shape, output_shape",
    [((28, 28, 1), (1, 26, 26, 64)), ((32, 32, 3), (1, 30, 30, 64))],
)
def test_resnet_stem_has_no_padding(input_shape, output_shape):
  def stem(x):
    model = models.create_model(
        "resnet18", input_shape=input_shape, num_classes=10, rngs=nnx.Rngs(0)
    )
    return model.stem_conv(x)

  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  assert jax.eval_shape(stem, x).shape == output_shape


def test_resnet_stem_is_a_valid_convolution():
  model = models.ResNet(
      models.BasicBlock, (1,), (12, 12, 3), num_classes=4, rngs=nnx.Rngs(0)
  )
  x = jax.random.normal(jax.random.key(1), (2, 12, 12, 3))
  expected = jax.lax.conv_general_dilated(
      x,
      model.stem_conv.kernel[...],
      window_strides=(1, 1),
      padding="VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )
  assert model.stem_conv.bias is None
  np.testing.assert_allclose(model.stem_conv(x), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# models.network: init/apply over plain dicts
# ---------------------------------------------------------------------------


def _assert_plain_dicts(tree):
  """Every inner node is a dict and every leaf an array (no nnx Variables)."""
  assert type(tree) is dict  # pylint: disable=unidiomatic-typecheck
  for value in tree.values():
    if isinstance(value, dict):
      _assert_plain_dicts(value)
    else:
      assert isinstance(value, jax.Array), type(value)


@pytest.mark.parametrize(
    "name, input_shape, has_batch_norm",
    [
        ("lenet5", (28, 28, 1), False),
        ("mlp", (28, 28, 1), False),
        ("resnet18", (8, 8, 3), True),
    ],
)
def test_network_init_gives_plain_dicts(name, input_shape, has_batch_norm):
  net = models.network(
      name, input_shape=input_shape, num_classes=5, mlp_hidden=(32,)
  )
  state = net.init(jax.random.key(0))
  assert isinstance(state, models.NetworkState)
  _assert_plain_dicts(state.params)
  _assert_plain_dicts(state.batch_stats)
  assert bool(state.batch_stats) == has_batch_norm
  model = _abstract(name, input_shape, 5, mlp_hidden=(32,))
  assert _size(state.params) == _num_params(model)
  # The key seeds the initialization.
  again = net.init(jax.random.key(0))
  other = net.init(jax.random.key(1))
  jax.tree.map(np.testing.assert_array_equal, again.params, state.params)
  for (path, a), b in zip(
      jax.tree_util.tree_leaves_with_path(other.params),
      jax.tree.leaves(state.params),
  ):
    if "kernel" in jax.tree_util.keystr(path):
      assert not np.array_equal(a, b), path


@pytest.mark.parametrize(
    "name, input_shape, num_classes",
    [("lenet5", (28, 28, 1), 10), ("mlp", (28, 28, 1), 7),
     ("resnet18", (8, 8, 1), 3)],
)
def test_network_apply_gives_logits(name, input_shape, num_classes):
  init, apply = _jitted_network(name, input_shape, num_classes)
  params, stats = init(jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (4, *input_shape))
  for train in (True, False):
    logits, new_stats = apply(params, stats, x, train=train)
    assert logits.shape == (4, num_classes) and logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
    assert jax.tree.structure(new_stats) == jax.tree.structure(stats)
  # The network computes what the nnx model computes.
  model = models.create_model(
      name, input_shape=input_shape, num_classes=num_classes,
      rngs=nnx.Rngs(params=jax.random.key(0)),
  )
  expected = nnx.jit(lambda model, x: model(x, train=False))(model, x)
  np.testing.assert_allclose(
      apply(params, stats, x, train=False)[0], expected, rtol=1e-5, atol=1e-5
  )
