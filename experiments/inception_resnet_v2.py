"""Inception-ResNet-v2 (Szegedy et al., 2017) in Flax NNX, for 299x299 images.

The paper's architecture as TF-slim's implementation (Google's released
ImageNet weights) and its common PyTorch ports build it (Cadene's
pretrainedmodels; timm's `inception_resnet_v2`,
timm/models/inception_resnet_v2.py, commit 066e490). The implementation's
stem ends in a Mixed_5b module of 320 features where the paper's figure has
384, so its block widths differ from the figures. Every convolution but the
residual up-projections is
conv (no bias) + BatchNorm(eps=1e-3) + ReLU; residuals are scaled by 0.17,
0.10 and 0.20 (10 x Block35, 20 x Block17, 9 x Block8, then one Block8 with
scale 1 and no ReLU); 1536 features, global average pooling, a linear
classifier. 55,843,464 parameters at 1000 classes (BatchNorm scales and
biases included; tests/experiments/test_imagenet_models.py derives the count
layer by layer). Weights start at torch's defaults, as that implementation
(it has no initialization of its own). Inputs of at least 75x75 pixels.

References:
  Szegedy, Ioffe, Vanhoucke, Alemi. "Inception-v4, Inception-ResNet and the
  Impact of Residual Connections on Learning". AAAI 2017 (arXiv:1602.07261).
"""

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from experiments import torch_layers


class ConvSpec(NamedTuple):
  """One conv + BatchNorm + ReLU: kernel and padding as (rows, columns)."""

  in_features: int
  out_features: int
  kernel: tuple[int, int] = (1, 1)
  padding: tuple[int, int] = (0, 0)
  stride: int = 1


def _spec(cin, cout, k=1, p=0, s=1) -> ConvSpec:
  pair = lambda v: (v, v) if isinstance(v, int) else v
  return ConvSpec(cin, cout, pair(k), pair(p), s)


def _max_pool(x: jax.Array) -> jax.Array:
  return nnx.max_pool(x, (3, 3), strides=(2, 2))


class ConvBN(nnx.Module):
  """conv (no bias) + BatchNorm(eps=1e-3) + ReLU: timm's BasicConv2d."""

  def __init__(self, spec: ConvSpec, rngs: nnx.Rngs):
    self.conv = torch_layers.conv(
        spec.in_features, spec.out_features, spec.kernel, rngs,
        stride=spec.stride, padding=spec.padding, use_bias=False,
    )
    # TF-slim's epsilon, kept by the PyTorch ports.
    self.bn = torch_layers.batch_norm(spec.out_features, rngs, epsilon=1e-3)

  def __call__(self, x, *, train):
    return nnx.relu(self.bn(self.conv(x), use_running_average=not train))


class Branch(nnx.Module):
  """Convolutions in sequence, optionally after a 3x3 average pool."""

  def __init__(self, specs: Sequence[ConvSpec], rngs: nnx.Rngs, *,
               avg_pool_first: bool = False):
    self.avg_pool_first = avg_pool_first
    self.layers = nnx.List([ConvBN(s, rngs) for s in specs])

  @property
  def out_features(self) -> int:
    return self.layers[-1].conv.out_features

  def __call__(self, x, *, train):
    if self.avg_pool_first:
      # torch's AvgPool2d(3, 1, padding=1, count_include_pad=False).
      x = nnx.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                       count_include_pad=False)
    for layer in self.layers:
      x = layer(x, train=train)
    return x


class Mixed(nnx.Module):
  """Parallel branches concatenated (Mixed_5b, and the reductions 6a, 7a,
  whose last branch is a parameter-free 3x3 stride-2 max-pool)."""

  def __init__(self, branches: Sequence[Branch], *, max_pool_branch: bool):
    self.branches = nnx.List(branches)
    self.max_pool_branch = max_pool_branch

  def __call__(self, x, *, train):
    outs = [b(x, train=train) for b in self.branches]
    if self.max_pool_branch:
      outs.append(_max_pool(x))
    return jnp.concatenate(outs, axis=-1)


class Residual(nnx.Module):
  """Block35 / Block17 / Block8: branches, a 1x1 up-projection (with bias),
  added to the input after scaling, then ReLU (except the last Block8)."""

  def __init__(self, width: int, branches: Sequence[Sequence[ConvSpec]],
               scale: float, rngs: nnx.Rngs, *, relu: bool = True):
    self.branches = nnx.List([Branch(specs, rngs) for specs in branches])
    self.conv2d = torch_layers.conv(
        sum(b.out_features for b in self.branches), width, 1, rngs)
    self.scale = scale
    self.relu = relu

  def __call__(self, x, *, train):
    y = jnp.concatenate([b(x, train=train) for b in self.branches], axis=-1)
    y = x + self.scale * self.conv2d(y)
    return nnx.relu(y) if self.relu else y


def block35(scale, rngs) -> Residual:
  """Inception-ResNet-A: 35x35 grid, 320 features."""
  return Residual(320, [
      [_spec(320, 32)],
      [_spec(320, 32), _spec(32, 32, 3, 1)],
      [_spec(320, 32), _spec(32, 48, 3, 1), _spec(48, 64, 3, 1)],
  ], scale, rngs)


def block17(scale, rngs) -> Residual:
  """Inception-ResNet-B: 17x17 grid, 1088 features."""
  return Residual(1088, [
      [_spec(1088, 192)],
      [_spec(1088, 128), _spec(128, 160, (1, 7), (0, 3)),
       _spec(160, 192, (7, 1), (3, 0))],
  ], scale, rngs)


def block8(scale, rngs, relu=True) -> Residual:
  """Inception-ResNet-C: 8x8 grid, 2080 features."""
  return Residual(2080, [
      [_spec(2080, 192)],
      [_spec(2080, 192), _spec(192, 224, (1, 3), (0, 1)),
       _spec(224, 256, (3, 1), (1, 0))],
  ], scale, rngs, relu=relu)


def mixed_5b(rngs) -> Mixed:
  """The stem's last module: 192 -> 320 features on the 35x35 grid."""
  return Mixed([
      Branch([_spec(192, 96)], rngs),
      Branch([_spec(192, 48), _spec(48, 64, 5, 2)], rngs),
      Branch([_spec(192, 64), _spec(64, 96, 3, 1), _spec(96, 96, 3, 1)],
             rngs),
      Branch([_spec(192, 64)], rngs, avg_pool_first=True),
  ], max_pool_branch=False)


def mixed_6a(rngs) -> Mixed:
  """Reduction-A (k=256, l=256, m=384, n=384, the paper's Table 1):
  35x35 -> 17x17, 1088 features."""
  return Mixed([
      Branch([_spec(320, 384, 3, s=2)], rngs),
      Branch([_spec(320, 256), _spec(256, 256, 3, 1),
              _spec(256, 384, 3, s=2)], rngs),
  ], max_pool_branch=True)


def mixed_7a(rngs) -> Mixed:
  """Reduction-B: 17x17 -> 8x8, 2080 features."""
  return Mixed([
      Branch([_spec(1088, 256), _spec(256, 384, 3, s=2)], rngs),
      Branch([_spec(1088, 256), _spec(256, 288, 3, s=2)], rngs),
      Branch([_spec(1088, 256), _spec(256, 288, 3, 1),
              _spec(288, 320, 3, s=2)], rngs),
  ], max_pool_branch=True)


class InceptionResNetV2(nnx.Module):
  """Inception-ResNet-v2; maps (N, H, W, C) images to (N, num_classes)."""

  def __init__(
      self,
      input_shape: Sequence[int] = (299, 299, 3),
      num_classes: int = 1000,
      *,
      rngs: nnx.Rngs,
  ):
    if min(input_shape[:2]) < 75:
      raise ValueError(
          f"inception_resnet_v2 needs images of at least 75x75 pixels (its "
          f"valid convolutions and pools), got {tuple(input_shape[:2])}.")
    stem = [
        _spec(input_shape[-1], 32, 3, s=2), _spec(32, 32, 3),
        _spec(32, 64, 3, 1), "max_pool", _spec(64, 80), _spec(80, 192, 3),
        "max_pool",
    ]
    # Max-pools carry no parameters: the stem keeps their places as None.
    self.stem = nnx.List(
        [None if s == "max_pool" else ConvBN(s, rngs) for s in stem])
    self.mixed_5b = mixed_5b(rngs)
    self.repeat = nnx.List([block35(0.17, rngs) for _ in range(10)])
    self.mixed_6a = mixed_6a(rngs)
    self.repeat_1 = nnx.List([block17(0.10, rngs) for _ in range(20)])
    self.mixed_7a = mixed_7a(rngs)
    self.repeat_2 = nnx.List(
        [block8(0.20, rngs) for _ in range(9)]
        + [block8(1.0, rngs, relu=False)])
    self.conv2d_7b = ConvBN(_spec(2080, 1536), rngs)
    self.head = torch_layers.linear(1536, num_classes, rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for layer in self.stem:
      x = _max_pool(x) if layer is None else layer(x, train=train)
    x = self.mixed_5b(x, train=train)
    for block in self.repeat:
      x = block(x, train=train)
    x = self.mixed_6a(x, train=train)
    for block in self.repeat_1:
      x = block(x, train=train)
    x = self.mixed_7a(x, train=train)
    for block in self.repeat_2:
      x = block(x, train=train)
    x = self.conv2d_7b(x, train=train)
    return self.head(jnp.mean(x, axis=(1, 2)))
