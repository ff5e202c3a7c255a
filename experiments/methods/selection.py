"""Small-loss selection: the schedule R(t), the selection mask, the record.

Shared by MentorNet, Co-teaching, Co-teaching+ and S2E (see small_loss.py
for the schedule's definition and its sources).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

def remember_rates(
    forget_rate: float, num_gradual: int, exponent: float
) -> np.ndarray:
  """R(t) for t = 0..T_k (constant afterwards), float64.

  Args:
    forget_rate: tau, the fraction forgotten once the schedule has ramped up.
    num_gradual: T_k, the epochs of the ramp (0: tau from the first epoch).
    exponent: c.

  Returns:
    ``(num_gradual + 1,)`` array; R(t) = 1 - tau * min((t / T_k)^c, 1).
  """
  if num_gradual == 0:
    return np.array([1.0 - forget_rate])
  t = np.arange(num_gradual + 1, dtype=np.float64)
  return 1.0 - forget_rate * np.minimum((t / num_gradual) ** exponent, 1.0)


def keep_counts(rates: np.ndarray, max_candidates: int) -> np.ndarray:
  """int32 ``(len(rates), max_candidates + 1)``: the number kept of n candidates.

  ``keep_counts(rates, B)[t, n] = int(rates[t] * n)``, or n where that is 0.
  """
  n = np.arange(max_candidates + 1)
  counts = (rates[:, None] * n[None, :]).astype(np.int64)
  return np.where(counts == 0, n[None, :], counts).astype(np.int32)


def keep_counts_traced(rates: jax.Array, max_candidates: int) -> jax.Array:
  """`keep_counts` of traced float32 rates (a forget rate in the state).

  The product is float32, not float64: a count can differ from
  `keep_counts`' by one where R(t) n lies within float32 rounding of an
  integer.
  """
  n = jnp.arange(max_candidates + 1)
  counts = jnp.floor(rates[:, None] * n[None, :]).astype(jnp.int32)
  return jnp.where(counts == 0, n[None, :], counts)


def keep_count(
    table: np.ndarray | jax.Array, epoch: jax.Array, num_candidates: jax.Array
) -> jax.Array:
  """How many of ``num_candidates`` to keep in (traced) ``epoch``."""
  row = jnp.minimum(epoch, table.shape[0] - 1)
  return jnp.asarray(table)[row, num_candidates]


def small_loss_mask(
    loss: jax.Array, keep: jax.Array, candidates: jax.Array | None = None
) -> jax.Array:
  """Bool (B,): the ``keep`` candidates of smallest loss.

  Args:
    loss: per-example losses, (B,).
    keep: how many to keep (traced int; at most the number of candidates).
    candidates: bool (B,), the examples eligible (default: all).

  Returns:
    The mask; ties go to the earlier position in the batch.
  """
  if candidates is None:
    candidates = jnp.ones(loss.shape, bool)
  order = jnp.argsort(jnp.where(candidates, loss, jnp.inf), stable=True)
  rank = jnp.zeros(loss.shape, jnp.int32).at[order].set(
      jnp.arange(loss.shape[0], dtype=jnp.int32)
  )
  return candidates & (rank < keep)




class SelectionRecord(NamedTuple):
  """Per training example (num_train,) int32.

  Attributes:
    times_selected: how many steps network 1 was updated on it.
    last_judged: the last epoch it was a candidate (-1: never).
    last_selected: the last epoch it was selected (-1: never).
  """

  times_selected: jax.Array
  last_judged: jax.Array
  last_selected: jax.Array


def empty_record(num_train: int) -> SelectionRecord:
  never = jnp.full(num_train, -1, jnp.int32)
  return SelectionRecord(jnp.zeros(num_train, jnp.int32), never, never)


def record_selection(
    record: SelectionRecord,
    indices: jax.Array,
    epoch: jax.Array,
    judged: jax.Array,
    selected: jax.Array,
) -> SelectionRecord:
  """The record after one batch (``indices`` are distinct within a batch)."""
  def stamp(last, mask):
    return last.at[indices].set(jnp.where(mask, epoch, last[indices]))

  return SelectionRecord(
      record.times_selected.at[indices].add(selected.astype(jnp.int32)),
      stamp(record.last_judged, judged),
      stamp(record.last_selected, selected),
  )


def judged_noisy(record: SelectionRecord) -> np.ndarray:
  """Sorted ids whose most recent judgement was a rejection."""
  last_judged = np.asarray(record.last_judged)
  return np.flatnonzero(last_judged > np.asarray(record.last_selected))


def report(state: Any) -> dict[str, Any]:
  """``noisy_ids`` and ``times_selected`` (arrays: written as .npy files)."""
  noisy = judged_noisy(state.record)
  return {
      "noisy_ids": noisy,
      "num_noisy": int(noisy.size),
      "times_selected": np.asarray(state.record.times_selected),
  }
