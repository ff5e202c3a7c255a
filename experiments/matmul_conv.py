"""A convolution as shifted slices times a matrix, for runs that share a program.

`jax.vmap` over runs (experiments/many_runs.py) turns a convolution with
per-run kernels into a grouped convolution, which XLA:CPU runs slower than the
runs one after another; written as slices and a matmul it becomes one batched
matmul. LeNet-5 uses it (`models.LENET_CONV`).
"""

import jax
import jax.numpy as jnp


# The options of `lax.conv_general_dilated` that `conv_as_matmul` accepts only
# at their defaults.
_TRIVIAL_CONV_OPTIONS = {
    "lhs_dilation": lambda v: v is None or all(d == 1 for d in v),
    "rhs_dilation": lambda v: v is None or all(d == 1 for d in v),
    "feature_group_count": lambda v: v == 1,
    "batch_group_count": lambda v: v == 1,
    "preferred_element_type": lambda v: v is None,
    "out_sharding": lambda v: v is None,
}


def conv_as_matmul(lhs, rhs, window_strides, padding, *,
                   dimension_numbers=None, precision=None, **options):
  """`lax.conv_general_dilated` for NHWC x HWIO, as shifted slices times a matrix.

  The patches are kh * kw strided slices of the padded input, concatenated
  along the features: no kernel is involved, so under `jax.vmap` over runs
  (`experiments/many_runs.py`, each run with its own kernel) the slicing
  folds the runs into the batch and the product becomes one batched matmul.
  A vmapped `lax.conv_general_dilated` with per-run kernels is a grouped
  convolution instead, which XLA:CPU runs slower than the runs one after
  another. Explicit padding pairs only, no dilation, no feature or batch
  groups (what `nnx.Conv` passes for LeNet-5).
  """
  nhwc_hwio = jax.lax.conv_dimension_numbers(
      lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
  if dimension_numbers is not None and jax.lax.conv_dimension_numbers(
      lhs.shape, rhs.shape, dimension_numbers) != nhwc_hwio:
    raise ValueError("conv_as_matmul: NHWC inputs and HWIO kernels only, got "
                     f"{dimension_numbers}.")
  if isinstance(padding, str):
    raise ValueError(f"conv_as_matmul: explicit padding pairs only, got {padding!r}.")
  for name, value in options.items():
    if name not in _TRIVIAL_CONV_OPTIONS:
      raise TypeError(f"conv_as_matmul: unexpected argument {name!r}.")
    if not _TRIVIAL_CONV_OPTIONS[name](value):
      raise ValueError(f"conv_as_matmul: no {name} (got {value!r}).")
  kh, kw, cin, cout = rhs.shape
  (sh, sw), (pad_h, pad_w) = window_strides, padding
  x = jnp.pad(lhs, ((0, 0), tuple(pad_h), tuple(pad_w), (0, 0)))
  out_h = (x.shape[1] - kh) // sh + 1
  out_w = (x.shape[2] - kw) // sw + 1
  # Features ordered (row, column, input channel), as the HWIO kernel.
  patches = jnp.concatenate([
      x[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw]
      for i in range(kh) for j in range(kw)
  ], axis=-1)
  return jnp.einsum("nhwp,po->nhwo", patches, rhs.reshape(kh * kw * cin, cout),
                    precision=precision)
