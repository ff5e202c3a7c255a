"""k = floor((1 - tau) * m), exactly, for a traced tau and a traced m.

Without 64-bit types on the device, `(1 - tau) * m` in float32 is off by up to
m * 2**-24 (several ranks at m = 1e8), and which parameters are critical would
then depend on rounding. Here tau's float32 value is taken apart into an integer
mantissa and a power of two, and ceil(tau * m) is computed with 32-bit limbs.
"""

import jax
import jax.numpy as jnp
import numpy as np

# A numpy constant: a jax array here would start the XLA backend at import,
# and jax.distributed.initialize() must run before that.
_MASK16 = np.uint32(0xFFFF)


def _mul_24x32(a: jax.Array, b: jax.Array):
  """(hi, lo) 32-bit words of a * b for a < 2**24 and b < 2**32 (uint32)."""
  a0, a1 = a & _MASK16, a >> 16
  b0, b1 = b & _MASK16, b >> 16
  p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
  mid = p01 + p10
  mid_carry = (mid < p01).astype(jnp.uint32)
  lo = p00 + (mid << 16)
  lo_carry = (lo < p00).astype(jnp.uint32)
  hi = p11 + (mid >> 16) + (mid_carry << 16) + lo_carry
  return hi, lo


def _ceil_shift(hi: jax.Array, lo: jax.Array, shift: jax.Array) -> jax.Array:
  """ceil((hi * 2**32 + lo) / 2**shift) for shift >= 23 and a result < 2**32."""
  one = jnp.uint32(1)
  # shift in [32, 63]: the quotient comes from hi alone.
  s_hi = jnp.clip(shift - 32, 0, 31).astype(jnp.uint32)
  q_big = hi >> s_hi
  r_big = ((hi & ((one << s_hi) - one)) | lo) != 0
  # shift in [23, 31]: the quotient straddles both words.
  s_lo = jnp.clip(shift, 1, 31).astype(jnp.uint32)
  q_small = (hi << (32 - s_lo)) | (lo >> s_lo)
  r_small = (lo & ((one << s_lo) - one)) != 0
  # shift >= 64: the product (< 2**56) is below one unit.
  q_tiny = jnp.uint32(0)
  r_tiny = (hi | lo) != 0
  q = jnp.where(shift >= 64, q_tiny, jnp.where(shift >= 32, q_big, q_small))
  r = jnp.where(shift >= 64, r_tiny, jnp.where(shift >= 32, r_big, r_small))
  return q + r.astype(jnp.uint32)


def keep_count(tau, m) -> jax.Array:
  """floor((1 - tau) * m) for tau in [0, 1] (as float32) and m < 2**32.

  Exact for the float32 value of tau: e.g. tau = 0.2 is 0.20000000298 in
  float32, so m = 10 keeps 7, not 8 (floor(7.9999999702)).

  Args:
    tau: fraction to drop, a scalar in [0, 1]; rounded to float32.
    m: number of entries, a non-negative integer scalar below 2**32.

  Returns:
    The number of entries to keep, uint32.
  """
  tau_bits = jax.lax.bitcast_convert_type(
      jnp.asarray(tau, jnp.float32), jnp.uint32
  )
  exponent = ((tau_bits >> 23) & jnp.uint32(0xFF)).astype(jnp.int32)
  fraction = tau_bits & jnp.uint32(0x7FFFFF)
  # tau = mantissa * 2**-shift; subnormals have no implicit leading one.
  mantissa = jnp.where(exponent > 0, fraction | jnp.uint32(0x800000), fraction)
  shift = 150 - jnp.maximum(exponent, 1)
  m = jnp.asarray(m, jnp.uint32)
  hi, lo = _mul_24x32(mantissa, m)
  return m - _ceil_shift(hi, lo, shift)
