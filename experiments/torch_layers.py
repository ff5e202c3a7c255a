"""Flax NNX layers built and initialized as PyTorch builds them by default.

The reference code (xiaoboxia/CDR) and the PyTorch implementations our
larger models follow (torchvision's ResNet-50, timm's Inception-ResNet-v2)
rely on torch's default initialization and explicit symmetric padding; these
constructors give every model here the same starting point.
"""

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

# PyTorch's default kernel init, kaiming_uniform(a=sqrt(5)), is uniform with
# bound 1/sqrt(fan_in), i.e. variance 1/(3 fan_in).
kernel_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def bias_init(fan_in: int) -> Callable:
  """PyTorch's default bias init: uniform in +-1/sqrt(fan_in)."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
  return (value, value) if isinstance(value, int) else tuple(value)


def linear(in_features: int, out_features: int, rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(
      in_features,
      out_features,
      kernel_init=kernel_init,
      bias_init=bias_init(in_features),
      rngs=rngs,
  )


def conv(
    in_features: int,
    out_features: int,
    kernel: int | tuple[int, int],
    rngs: nnx.Rngs,
    *,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    use_bias: bool = True,
    impl: Callable = jax.lax.conv_general_dilated,
) -> nnx.Conv:
  """A 2-D convolution; `kernel` and `padding` are one int or (rows, cols)."""
  kh, kw = _pair(kernel)
  ph, pw = _pair(padding)
  # Explicit symmetric padding, as torch: flax's "SAME" pads stride-2 convs
  # asymmetrically, which shifts every downsampled feature map by a pixel.
  return nnx.Conv(
      in_features,
      out_features,
      (kh, kw),
      strides=stride,
      padding=((ph, ph), (pw, pw)),
      use_bias=use_bias,
      kernel_init=kernel_init,
      bias_init=bias_init(in_features * kh * kw),
      rngs=rngs,
      conv_general_dilated=impl,
  )


def batch_norm(
    features: int, rngs: nnx.Rngs, *, epsilon: float = 1e-5
) -> nnx.BatchNorm:
  # torch's BatchNorm2d(momentum=0.1) keeps 0.9 of the running average.
  return nnx.BatchNorm(features, momentum=0.9, epsilon=epsilon, rngs=rngs)
