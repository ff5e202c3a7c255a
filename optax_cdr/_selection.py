"""Exact k-th largest of non-negative scores spread over a pytree.

For non-negative IEEE-754 floats the order of the uint32 bit patterns is the
order of the values, so the k-th largest score can be found exactly by a
selection over integers: no sort, no `lax.top_k` (which needs a static k and
lowers to a full sort on CPU), and no concatenation of the leaves. Each pass
reduces every leaf to a small histogram or count and sums those over the leaves,
so under sharded parameters the only cross-device traffic is that small sum.

Non-finite scores (NaN, +inf) are not ranked: the k-th largest is taken over the
finite scores only, so a bad entry can never move the threshold of the others.

The scores may be given as the arrays they are computed from (`cdr` passes
(gradient, parameter) pairs and |g * w| is recomputed inside every pass), so
that no pass needs the scores stored in memory.
"""

from typing import Callable, NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

# Bit pattern of +inf; every finite non-negative float32 lies below it, every NaN
# (with its sign bit cleared) above it.
_INF_BITS = 0x7F800000

# Two histogram passes: the top 15 bits (bit 31, the sign, is always 0), then
# the low 16 bits inside the chosen bucket. Scores outside a pass's range get
# an out-of-range bin and the scatter drops them.
_HIGH_BITS = 15
_LOW_BITS = 16

# On CPU a pass walks each leaf in chunks of 2**18 scores, then the rest in
# chunks of 2**14: the bin indices (and the scatter's ones) then live in cache
# instead of in m-sized temporary arrays, which makes a pass ~2.5x faster and
# its memory independent of m (measured with
# experiments/benchmarks/selection.py).
_CHUNKS = (1 << 18, 1 << 14)

RankOrFn = Union[int, jax.Array, Callable[[jax.Array], jax.Array]]
ScoreFn = Callable[..., jax.Array]


class KthLargest(NamedTuple):
  """Result of `kth_largest`.

  Attributes:
    value: the k-th largest finite score (float32); +inf when k == 0, so that
      `score >= value` selects nothing.
    num_at_least: number of finite scores >= value (k plus the ties at value).
    num_finite: number of finite scores, the m that k was taken from.
    k: the rank that was used, after clipping to [0, num_finite].
  """

  value: jax.Array
  num_at_least: jax.Array
  num_finite: jax.Array
  k: jax.Array


def score_bits(score: jax.Array) -> jax.Array:
  """Order-preserving uint32 bit pattern of non-negative float32 scores.

  The sign bit is cleared so that -0.0 ranks as +0.0 and every NaN ranks above
  +inf, whatever its sign.
  """
  bits = jax.lax.bitcast_convert_type(score.astype(jnp.float32), jnp.uint32)
  return bits & jnp.uint32(0x7FFFFFFF)


class Source(NamedTuple):
  """Arrays of one shape whose elementwise `score_fn` gives the scores."""

  arrays: tuple
  score_fn: ScoreFn

  @property
  def size(self) -> int:
    return int(jnp.size(self.arrays[0]))

  def bits(self, arrays=None) -> jax.Array:
    return score_bits(self.score_fn(*(self.arrays if arrays is None else arrays)))


def _resolve_rank(k: RankOrFn, num_finite: jax.Array) -> jax.Array:
  k = k(num_finite) if callable(k) else k
  if isinstance(k, int):
    k = jnp.uint32(min(max(k, 0), 2**32 - 1))
  elif jnp.issubdtype(jnp.result_type(k), jnp.signedinteger):
    k = jnp.maximum(k, 0)
  return jnp.minimum(jnp.asarray(k).astype(jnp.uint32), num_finite)


def _reverse_cumsum(x: jax.Array) -> jax.Array:
  return jnp.cumsum(x[::-1])[::-1]


def _top_bucket(hist: jax.Array, k: jax.Array, cols: int = 256):
  """Largest bucket b with count(bucket >= b) >= k; count(> b); count(>= b).

  Two levels (rows of `cols` buckets, then one row) instead of one cumsum
  over all buckets: a 64k-long cumsum costs more than a small model's whole
  histogram pass on CPU.
  """
  rows = hist.shape[0] // cols
  row_at_least = _reverse_cumsum(hist.reshape(rows, cols).sum(1))
  row = jnp.sum(row_at_least >= k, dtype=jnp.int32) - 1
  next_row = jnp.minimum(row + 1, rows - 1)
  above_row = jnp.where(row + 1 < rows, row_at_least[next_row], 0)
  in_row = jax.lax.dynamic_slice(hist, (row * cols,), (cols,))
  at_least = _reverse_cumsum(in_row) + above_row.astype(jnp.uint32)
  col = jnp.sum(at_least >= k, dtype=jnp.int32) - 1
  above = jnp.where(col + 1 < cols, at_least[jnp.minimum(col + 1, cols - 1)],
                    above_row)
  return row * cols + col, above.astype(jnp.uint32), at_least[col]


def _replicated_like(x: jax.Array) -> dict:
  """`out_sharding` for a small result under explicit sharding, else nothing.

  With explicit mesh axes JAX cannot infer where a scatter from sharded indices
  into a small histogram should live; replicated makes XLA scatter locally and
  all-reduce the histogram, never gather the indices.
  """
  sharding = jax.typeof(x).sharding
  if jax.sharding.AxisType.Explicit not in sharding.mesh.axis_types:
    return {}
  return {"out_sharding": jax.sharding.NamedSharding(sharding.mesh, P())}


def _is_local(x: jax.Array) -> bool:
  """Whether every device holds all of `x` (so slicing it moves no data).

  Under an explicit mesh the type says so; otherwise (automatic sharding
  inside `jit`) only a single device rules out sharding.
  """
  sharding = jax.typeof(x).sharding
  if jax.sharding.AxisType.Explicit in sharding.mesh.axis_types:
    return all(axis is None for axis in sharding.spec)
  return not sharding.mesh.axis_names and jax.device_count() == 1


@jax.custom_batching.custom_vmap
def _add_counts(hist: jax.Array, bins: jax.Array) -> jax.Array:
  """hist[b] += 1 for every b in `bins`; out-of-range bins are dropped."""
  return hist.at[bins].add(jnp.uint32(1), mode="drop")


@_add_counts.def_vmap
def _add_counts_batched(axis_size: int, in_batched, hist, bins):
  """Under `jax.vmap` (several runs in one program): one flat 1-D scatter.

  JAX's own rule scatters with (run, bin) index pairs, which XLA:CPU runs
  ~1.4x slower per run than separate runs' 1-D scatters; offsetting each
  run's bins into one long histogram keeps the 1-D scatter.
  """
  hist_batched, bins_batched = in_batched
  if not hist_batched:
    hist = jnp.broadcast_to(hist, (axis_size, *hist.shape))
  if not bins_batched:
    bins = jnp.broadcast_to(bins, (axis_size, *bins.shape))
  num_bins = hist.shape[-1]
  if axis_size * num_bins > 2**32 - 1:  # Offsets would overflow uint32.
    return jax.vmap(lambda h, b: h.at[b].add(jnp.uint32(1), mode="drop"))(
        hist, bins), True
  offsets = jnp.arange(axis_size, dtype=jnp.uint32) * jnp.uint32(num_bins)
  offsets = offsets.reshape((axis_size,) + (1,) * (bins.ndim - 1))
  flat_bins = jnp.where(bins < num_bins, bins + offsets,
                        jnp.uint32(axis_size * num_bins))
  flat = _add_counts(hist.reshape(-1), flat_bins.reshape(-1))
  return flat.reshape(hist.shape), True


def _histogram(sources: Sequence[Source], num_bins: int, bin_index,
               chunked: bool) -> jax.Array:
  """Counts of all scores per `bin_index(bits)`, in one read pass.

  Out-of-range bins are dropped. Unsigned indices: JAX adds no
  negative-index fix-up to the scatter.
  """
  def count(hist, bits):
    out_sharding = _replicated_like(bits)
    if not out_sharding:
      return _add_counts(hist, bin_index(bits))
    return hist.at[bin_index(bits)].add(jnp.uint32(1), mode="drop",
                                        **out_sharding)

  hist = jnp.zeros((num_bins,), jnp.uint32)
  for source in sources:
    n = source.size
    if not chunked or n <= _CHUNKS[-1]:
      hist = count(hist, source.bits())
      continue
    flat = tuple(a.reshape(-1) for a in source.arrays)
    done = 0
    for size in _CHUNKS:
      num_chunks = (n - done) // size

      def add_chunk(i, h, flat=flat, source=source, start=done, size=size):
        offset = start + i * size
        return count(h, source.bits(tuple(
            jax.lax.dynamic_slice(a, (offset,), (size,)) for a in flat)))

      if num_chunks:
        hist = jax.lax.fori_loop(0, num_chunks, add_chunk, hist)
      done += num_chunks * size
    if done < n:
      hist = count(hist, source.bits(tuple(a[done:] for a in flat)))
  return hist


def _range_histogram(sources, base, shift, log2_bins: int, chunked: bool):
  """Finite scores in [base, base + 2**(log2_bins + shift)), by bits >> shift.

  Scores below `base` wrap to offsets of at least 2**31 >> shift, out of
  range as long as log2_bins + shift <= 31.
  """
  num_bins = 1 << log2_bins

  def bin_index(bits):
    offset = (bits - base) >> shift
    keep = (offset < num_bins) & (bits < _INF_BITS)
    return jnp.where(keep, offset, jnp.uint32(num_bins))

  return _histogram(sources, num_bins, bin_index, chunked)


def _radix_select(sources, k: RankOrFn) -> KthLargest:
  """Two histogram passes: the top 15 bits, then the low 16 bits in one bucket.

  Leaves are walked in chunks on CPU unless they may be sharded: slicing a
  sharded leaf would make XLA gather it.
  """
  chunked = jax.default_backend() == "cpu" and all(
      _is_local(a) for s in sources for a in s.arrays)
  zero = jnp.uint32(0)
  hist = _range_histogram(sources, zero, jnp.uint32(_LOW_BITS), _HIGH_BITS,
                          chunked)
  num_finite = jnp.sum(hist, dtype=jnp.uint32)
  k = _resolve_rank(k, num_finite)
  bucket, above, _ = _top_bucket(hist, k)
  base = bucket.astype(jnp.uint32) << _LOW_BITS
  hist = _range_histogram(sources, base, zero, _LOW_BITS, chunked)
  low, _, low_at_least = _top_bucket(hist, k - above)
  return _finish(base + low.astype(jnp.uint32), above + low_at_least,
                 num_finite, k)


def _bisection_select(sources, k: RankOrFn) -> KthLargest:
  """31 counting passes, one bit of the answer each: no scatter, no atomics."""

  def count_where(predicate):
    return sum(jnp.sum(predicate(s.bits()), dtype=jnp.uint32) for s in sources)

  finite = lambda bits: bits < _INF_BITS
  count_at_least = lambda t: count_where(lambda b: (b >= t) & finite(b))
  num_finite = count_where(finite)
  k = _resolve_rank(k, num_finite)

  def set_bit_if_enough(i, value_bits):
    candidate = value_bits | (jnp.uint32(1) << (30 - i).astype(jnp.uint32))
    return jnp.where(count_at_least(candidate) >= k, candidate, value_bits)

  value_bits = jax.lax.fori_loop(0, 31, set_bit_if_enough, jnp.uint32(0))
  return _finish(value_bits, count_at_least(value_bits), num_finite, k)


def _finish(value_bits, num_at_least, num_finite, k) -> KthLargest:
  nothing = k == 0
  value_bits = jnp.where(nothing, jnp.uint32(_INF_BITS), value_bits)
  return KthLargest(
      value=jax.lax.bitcast_convert_type(value_bits, jnp.float32),
      num_at_least=jnp.where(nothing, jnp.uint32(0), num_at_least),
      num_finite=num_finite,
      k=k,
  )


_METHODS = {"radix": _radix_select, "bisection": _bisection_select}
METHOD_NAMES = ("auto", *_METHODS)


# Below this many scores the radix select's fixed cost (histograms of 32k and
# 64k bins) exceeds 31 counting passes (measured on CPU; see
# experiments/benchmarks/selection.py).
_SMALL = 1 << 14


def _default_method(size: int) -> str:
  # TPUs lower scatter-adds (histograms) slowly; counting passes are plain
  # reductions there. CPUs and GPUs favour the radix select.
  if jax.default_backend() == "tpu" or size < _SMALL:
    return "bisection"
  return "radix"


def select(sources: Sequence[Source], k: RankOrFn, *,
           method: str = "auto") -> KthLargest:
  """`kth_largest` over scores given as `Source`s (computed inside passes)."""
  if method == "auto":
    method = _default_method(sum(s.size for s in sources))
  if method not in _METHODS:
    raise ValueError(
        f"Unknown selection method {method!r}; expected one of {METHOD_NAMES}."
    )
  return _METHODS[method](list(sources), k)


def _as_float32(score: jax.Array) -> jax.Array:
  return score.astype(jnp.float32)


def kth_largest(scores, k: RankOrFn, *, method: str = "auto") -> KthLargest:
  """Exact k-th largest finite value over all leaves of a pytree of scores.

  Works under `jax.jit` with a traced `k`, never sorts, never concatenates the
  leaves, and under sharded leaves all-reduces only small histograms or counts.

  Args:
    scores: a pytree of non-negative float arrays (any float dtype; compared as
      float32). NaN and +inf entries are excluded from the ranking.
    k: the rank, 1 = the largest, as an integer (static or traced), or a
      callable mapping the number of finite scores (uint32) to the rank. It is
      clipped to [0, number of finite scores]; k == 0 gives +inf.
    method: "radix" (two histogram passes), "bisection" (31 counting passes)
      or "auto" (bisection on TPU or below 16k scores, radix elsewhere). All
      give the same result.

  Returns:
    A `KthLargest` with the value, the number of finite scores >= it (which
    exceeds k by the ties), the number of finite scores and the k used.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_cdr import kth_largest
    >>> r = kth_largest({'a': jnp.array([3., 1.]), 'b': jnp.array([[2., 2.]])}, 2)
    >>> float(r.value), int(r.num_at_least)
    (2.0, 3)
  """
  leaves = [jnp.asarray(leaf) for leaf in jax.tree.leaves(scores)]
  if method not in METHOD_NAMES:
    raise ValueError(
        f"Unknown selection method {method!r}; expected one of {METHOD_NAMES}."
    )
  if not leaves:
    raise ValueError("kth_largest needs at least one array of scores.")
  for leaf in leaves:
    if not jnp.issubdtype(leaf.dtype, jnp.floating):
      raise TypeError(f"Scores must be floating point, got {leaf.dtype}.")
  sources = [Source((leaf,), _as_float32) for leaf in leaves]
  return select(sources, k, method=method)
