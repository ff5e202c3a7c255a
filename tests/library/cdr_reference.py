"""A plain NumPy statement of the CDR update, the spec the transform must match.

It sorts the concatenated scores (the obvious, slow way) and models what XLA
does on CPU with float32: subnormal inputs and results are flushed to zero.
"""

import math
from fractions import Fraction

import numpy as np

_TINY = np.finfo(np.float32).tiny


def _flush(x: np.ndarray) -> np.ndarray:
  return np.where(np.abs(x) < _TINY, np.float32(0), x).astype(np.float32)


def scores(g: np.ndarray, w: np.ndarray) -> np.ndarray:
  g32 = _flush(np.asarray(g, np.float32))
  w32 = _flush(np.asarray(w, np.float32))
  with np.errstate(invalid="ignore", over="ignore"):
    return _flush(np.abs(g32 * w32))


def keep_count(tau, m: int, *, python_tau: bool) -> int:
  if python_tau:
    return int((1.0 - float(tau)) * m)
  return m - math.ceil(Fraction(float(np.float32(tau))) * m)


def threshold(score_list, tau, *, python_tau: bool = True):
  """(k-th largest finite score or +inf, k, m) over all ranked leaves."""
  flat = np.concatenate([s.ravel() for s in score_list])
  all_finite = bool(np.isfinite(flat).all())
  flat = flat[np.isfinite(flat)]
  m = flat.size
  k = keep_count(tau, m, python_tau=python_tau and all_finite)
  if k == 0:
    return np.float32(np.inf), k, m
  return np.sort(flat)[::-1][k - 1], k, m


def cdr_update(grads, params, ranked, tau, lam, *, regularizer="l1",
               critical_scale=None, python_tau=True):
  """Returns (updates, critical masks, threshold, num_critical, m) as lists."""
  score_list = [scores(g, w) for g, w, r in zip(grads, params, ranked) if r]
  t, _, m = threshold(score_list, tau, python_tau=python_tau)
  if critical_scale is not None:
    scale = np.float32(critical_scale)
  elif python_tau:  # JAX rounds the float64 result of 1.0 - tau
    scale = np.float32(1.0 - float(tau))
  else:  # a float32 array tau: float32 arithmetic
    scale = np.float32(1) - np.float32(tau)
  updates, masks, num_critical = [], [], 0
  for g, w, r in zip(grads, params, ranked):
    if not r:
      updates.append(np.asarray(g))
      masks.append(np.zeros(np.shape(g), bool))
      continue
    s = scores(g, w)
    critical = np.isfinite(s) & (s >= t)
    num_critical += int(critical.sum())
    passes = critical | ~np.isfinite(s)
    w32 = _flush(np.asarray(w, np.float32))
    shrink = np.sign(w32) if regularizer == "l1" else w32
    with np.errstate(invalid="ignore", over="ignore"):
      u = np.where(passes, scale * np.asarray(g, np.float32), np.float32(0))
      u = u + np.float32(lam) * shrink
    updates.append(u.astype(np.asarray(g).dtype))
    masks.append(critical)
  return updates, masks, t, num_critical, m
