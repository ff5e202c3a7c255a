"""Tests for the ImageNet-scale models (resnet50_imagenet, inception_resnet_v2)
and the bfloat16 compute dtype of experiments.models.network."""

import math

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import optax_cdr
from experiments import inception_resnet_v2 as irv2
from experiments import methods
from experiments import models
from experiments.methods.base import Batch, StepInfo

from conftest import make_context


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _abstract(name, input_shape, num_classes):
  return nnx.eval_shape(lambda: models.create_model(
      name, input_shape=input_shape, num_classes=num_classes,
      rngs=nnx.Rngs(0)))


def _params(module):
  return nnx.to_pure_dict(nnx.state(module, nnx.Param))


# Inception-ResNet-v2, layer by layer (timm inception_resnet_v2.py, commit
# 066e490; TF-slim's inception_resnet_v2): conv (no bias) + BatchNorm
# (scale, bias) everywhere, a biased 1x1 up-projection closing each residual.
def _conv_bn(cin, cout, kh, kw=None):
  return cin * cout * kh * (kh if kw is None else kw) + 2 * cout


def _projection(cin, cout):
  return cin * cout + cout


_STEM = (_conv_bn(3, 32, 3) + _conv_bn(32, 32, 3) + _conv_bn(32, 64, 3)
         + _conv_bn(64, 80, 1) + _conv_bn(80, 192, 3))
_MIXED_5B = (_conv_bn(192, 96, 1)
             + _conv_bn(192, 48, 1) + _conv_bn(48, 64, 5)
             + _conv_bn(192, 64, 1) + _conv_bn(64, 96, 3) + _conv_bn(96, 96, 3)
             + _conv_bn(192, 64, 1))
_BLOCK35 = (_conv_bn(320, 32, 1)
            + _conv_bn(320, 32, 1) + _conv_bn(32, 32, 3)
            + _conv_bn(320, 32, 1) + _conv_bn(32, 48, 3) + _conv_bn(48, 64, 3)
            + _projection(32 + 32 + 64, 320))
_MIXED_6A = (_conv_bn(320, 384, 3)
             + _conv_bn(320, 256, 1) + _conv_bn(256, 256, 3)
             + _conv_bn(256, 384, 3))
_BLOCK17 = (_conv_bn(1088, 192, 1)
            + _conv_bn(1088, 128, 1) + _conv_bn(128, 160, 1, 7)
            + _conv_bn(160, 192, 7, 1)
            + _projection(192 + 192, 1088))
_MIXED_7A = (_conv_bn(1088, 256, 1) + _conv_bn(256, 384, 3)
             + _conv_bn(1088, 256, 1) + _conv_bn(256, 288, 3)
             + _conv_bn(1088, 256, 1) + _conv_bn(256, 288, 3)
             + _conv_bn(288, 320, 3))
_BLOCK8 = (_conv_bn(2080, 192, 1)
           + _conv_bn(2080, 192, 1) + _conv_bn(192, 224, 1, 3)
           + _conv_bn(224, 256, 3, 1)
           + _projection(192 + 256, 2080))
_CONV_7B = _conv_bn(2080, 1536, 1)


def _inception_count(num_classes):
  return (_STEM + _MIXED_5B + 10 * _BLOCK35 + _MIXED_6A + 20 * _BLOCK17
          + _MIXED_7A + 10 * _BLOCK8 + _CONV_7B
          + 1536 * num_classes + num_classes)


def test_inception_count_derived_matches_the_published_one():
  # timm's model card / `timm.create_model("inception_resnet_v2")`: 55.84M
  # parameters at 1000 classes, 55,843,464 exactly.
  assert _inception_count(1000) == 55_843_464


@pytest.mark.parametrize("build, expected", [
    (irv2.mixed_5b, _MIXED_5B),
    (lambda rngs: irv2.block35(0.17, rngs), _BLOCK35),
    (irv2.mixed_6a, _MIXED_6A),
    (lambda rngs: irv2.block17(0.10, rngs), _BLOCK17),
    (irv2.mixed_7a, _MIXED_7A),
    (lambda rngs: irv2.block8(1.0, rngs, relu=False), _BLOCK8),
])
def test_inception_modules_count_as_derived(build, expected):
  assert _count(_params(nnx.eval_shape(lambda: build(nnx.Rngs(0))))) == expected


@pytest.mark.slow  # Building the whole model abstractly takes ~30 s here.
def test_inception_resnet_v2_whole():
  model = _abstract("inception_resnet_v2", (299, 299, 3), 1000)
  params = _params(model)
  assert _count(params) == _inception_count(1000) == 55_843_464
  assert _count(params["stem"]) == _STEM
  assert (len(model.repeat), len(model.repeat_1), len(model.repeat_2)) == (
      10, 20, 10)
  # CDR ranks exactly the convolution and dense kernels.
  ranked = jax.tree.leaves(jax.tree.map(
      lambda m, p: math.prod(p.shape) if m else 0,
      optax_cdr.default_mask(params), params))
  biases = 10 * 320 + 20 * 1088 + 10 * 2080 + 1000
  bn = 2 * sum(x.shape[0] for path, x in jax.tree_util.tree_leaves_with_path(
      params) if jax.tree_util.keystr(path).endswith("['scale']"))
  assert sum(ranked) == 55_843_464 - biases - bn


def test_resnet50_imagenet_is_torchvisions():
  model = _abstract("resnet50_imagenet", (224, 224, 3), 1000)
  params = _params(model)
  # torchvision.models.resnet50().parameters(): 25,557,032 (its weights
  # table, ResNet50_Weights.IMAGENET1K_V1 "num_params").
  assert _count(params) == 25_557_032
  assert params["stem_conv"]["kernel"].shape == (7, 7, 3, 64)
  # v1.5: the stride is on the 3x3 convolution of a stage's first block.
  assert model.blocks[3].conv2.strides == 2
  assert model.blocks[3].conv1.strides == 1
  # CDR ranks the 53 convolution kernels and the classifier's kernel only.
  mask = optax_cdr.default_mask(params)
  ranked = [p for m, p in zip(jax.tree.leaves(mask), jax.tree.leaves(params))
            if m]
  assert len(ranked) == 54
  assert all(p.ndim == 4 for p in ranked[:-1] if p.shape != (2048, 1000))
  net = models.network("resnet50_imagenet", input_shape=(224, 224, 3),
                       num_classes=1000)
  state = jax.eval_shape(net.init, jax.random.key(0))
  logits, _ = jax.eval_shape(
      lambda s, x: net.apply(s.params, s.batch_stats, x, train=False),
      state, jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32))
  assert logits.shape == (2, 1000)


def test_imagenet_stem_is_initialized_as_torchvision():
  # kaiming_normal_(fan_out, relu): std sqrt(2 / (out * kh * kw)), mean 0.
  model = models.ResNet(models.BasicBlock, (1,), (64, 64, 3), 10,
                        imagenet_stem=True, rngs=nnx.Rngs(0))
  for conv in (model.stem_conv, model.blocks[0].conv2):
    kernel = np.asarray(conv.kernel[...])
    kh, kw, _, out = kernel.shape
    assert np.std(kernel) == pytest.approx(math.sqrt(2 / (out * kh * kw)),
                                           rel=0.05)
  assert np.all(np.asarray(model.stem_bn.scale[...]) == 1)


@pytest.mark.slow
@pytest.mark.parametrize("name, input_shape", [
    ("resnet50_imagenet", (32, 32, 3)), ("inception_resnet_v2", (75, 75, 3)),
])
def test_forward_backward_at_the_smallest_size(name, input_shape):
  net = models.network(name, input_shape=input_shape, num_classes=5)
  state = jax.jit(net.init)(jax.random.key(0))

  def loss(params, images):
    logits, _ = net.apply(params, state.batch_stats, images, train=True)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits, jnp.arange(2)))

  value, grads = jax.jit(jax.value_and_grad(loss))(
      state.params, jnp.ones((2, *input_shape)))
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_inception_refuses_small_images():
  with pytest.raises(ValueError, match="at least 75x75"):
    models.create_model("inception_resnet_v2", input_shape=(64, 64, 3),
                        num_classes=10, rngs=nnx.Rngs(0))


def _compute_dtypes(net, state, input_shape):
  """Element types of the operands of every convolution and matmul."""
  jaxpr = jax.make_jaxpr(
      lambda s, x: net.apply(s.params, s.batch_stats, x, train=True))(
          state, jnp.ones((2, *input_shape)))
  dtypes = set()

  def visit(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in ("conv_general_dilated", "dot_general"):
        dtypes.update(v.aval.dtype for v in eqn.invars)
    for sub in jax.extend.core.subjaxprs(jaxpr):
      visit(sub)

  visit(jaxpr.jaxpr)
  return dtypes


@pytest.mark.parametrize("name, input_shape", [
    ("lenet5", (28, 28, 1)),  # Its convolutions are matmuls (matmul_conv).
    ("resnet18", (16, 16, 3)),  # lax convolutions and BatchNorm.
    # Slow: its abstract build alone takes ~30 s here.
    pytest.param("inception_resnet_v2", (75, 75, 3), marks=pytest.mark.slow),
])
def test_bfloat16_computes_in_bfloat16_and_keeps_float32(name, input_shape):
  net = models.network(name, input_shape=input_shape, num_classes=10,
                       dtype="bfloat16")
  state = jax.eval_shape(net.init, jax.random.key(0))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state))
  assert _compute_dtypes(net, state, input_shape) == {jnp.dtype(jnp.bfloat16)}
  logits, stats = jax.eval_shape(
      lambda s, x: net.apply(s.params, s.batch_stats, x, train=True),
      state, jax.ShapeDtypeStruct((2, *input_shape), jnp.float32))
  assert logits.dtype == jnp.float32
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(stats))


def test_float32_is_the_model_as_built():
  net = models.network("lenet5", input_shape=(28, 28, 1), num_classes=10)
  state = jax.eval_shape(net.init, jax.random.key(0))
  assert _compute_dtypes(net, state, (28, 28, 1)) == {jnp.dtype(jnp.float32)}


def test_cdr_step_in_bfloat16_is_finite_and_state_stays_float32():
  net = models.network("mlp", input_shape=(8, 8, 1), num_classes=10,
                       mlp_hidden=(64, 64), dtype="bfloat16")
  ctx = make_context("cdr_ref", network=net, num_train=8, noise_rate=0.2)
  method = methods.get("cdr_ref").make(ctx)
  images = jax.random.uniform(jax.random.key(1), (8, 8, 8, 1))
  batch = Batch(images, jnp.arange(8) % 10, jnp.arange(8))
  info = StepInfo(jnp.zeros([], jnp.int32), jnp.zeros([], jnp.int32))
  state = method.init(jax.random.key(2))
  new_state, metrics = jax.jit(method.train_step)(state, batch, info)
  assert np.isfinite(metrics["train_loss"])
  floats = [x for x in jax.tree.leaves(new_state)
            if jnp.issubdtype(x.dtype, jnp.floating)]
  assert floats and all(x.dtype == jnp.float32 for x in floats)
  # The step moved the parameters.
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(state), jax.tree.leaves(new_state))
             if a.dtype == jnp.float32)


@pytest.mark.parametrize("name", [
    "food101_resnet50", "clothing1m_resnet50", "cifar10n_resnet34",
    "cifar100n_resnet34",
    # Slow: Inception-ResNet-v2's abstract build takes ~30 s here.
    pytest.param("webvision_mini_inception_resnet_v2", marks=pytest.mark.slow),
])
def test_real_noise_configs_validate_and_build(name):
  from experiments import grid  # pylint: disable=import-outside-toplevel
  from experiments import run_config  # pylint: disable=import-outside-toplevel
  from experiments.data import specs  # pylint: disable=import-outside-toplevel
  config = grid.load_config(name)
  run_config.validate(config)
  spec = specs.get_spec(config.dataset) if hasattr(specs, "get_spec") else (
      specs.SPECS[specs.canonical_name(config.dataset)])
  shape = (spec.train_size, spec.train_size, 3)
  net = models.network(config.model, input_shape=shape,
                       num_classes=spec.num_classes, dtype=config.dtype)
  state = jax.eval_shape(net.init, jax.random.key(0))
  assert state.params["head"]["bias"].shape == (spec.num_classes,)
