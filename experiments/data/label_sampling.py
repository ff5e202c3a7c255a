"""Shared parts of the label-noise models: checks, sampling, the result type."""

from typing import NamedTuple

import numpy as np

from experiments import errors


class NoisyLabels(NamedTuple):
  """Noisy labels together with what is needed to analyse them.

  Attributes:
    labels: ``(n,)`` int32 noisy labels.
    realized_rate: fraction of labels that differ from the clean ones; it
      fluctuates around the requested rate because flips are sampled.
    transition: ``(c, c)`` row-stochastic ``T[i, j] = p(noisy=j | clean=i)``,
      or ``None`` for instance-dependent noise, which has one row per sample.
    corruption_rate: the expected fraction of wrong labels,
      ``1 - mean_i rows[i, y_i]`` over the rows the labels were drawn from:
      ``1 - sum_c pi_c T_cc`` with ``pi`` the labels' class frequencies for
      class-level noise (``n`` for symmetric and pairflip, ``0.4 n`` for
      Fashion-MNIST's asymmetric map), the mean flip rate for instance
      noise. This, not the nominal rate, is "the fraction of corrupted
      labels" that the small-loss methods forget.
  """

  labels: np.ndarray
  realized_rate: float
  transition: np.ndarray | None
  corruption_rate: float


def check_num_classes(num_classes: int) -> None:
  if isinstance(num_classes, bool) or not isinstance(
      num_classes, (int, np.integer)
  ):
    raise errors.UserError(f"num_classes must be an int, got {num_classes!r}.")
  if num_classes < 2:
    raise errors.UserError(f"num_classes must be at least 2, got {num_classes}.")


def check_rate(rate: float) -> None:
  if not 0.0 <= rate < 1.0:  # Also rejects NaN.
    raise errors.UserError(f"noise rate must be in [0, 1), got {rate!r}.")


def check_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Returns ``labels`` as int32 after checking shape, dtype and range."""
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise errors.UserError(f"labels must be 1-D, got shape {labels.shape}.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise errors.UserError(f"labels must be integers, got dtype {labels.dtype}.")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise errors.UserError(
        f"labels must lie in [0, {num_classes}) for num_classes={num_classes},"
        f" got values in [{labels.min()}, {labels.max()}]."
    )
  return labels.astype(np.int32)


def sample_rows(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Draws one class per row of a row-stochastic matrix (inverse CDF).

  One uniform per row is compared against the row's cumulative sum, which
  vectorizes over samples and spends exactly one draw per sample, so results
  do not depend on the distribution's shape.

  Args:
    rows: ``(n, c)`` rows, each a probability distribution over classes.
    rng: numpy generator.

  Returns:
    ``(n,)`` int32 sampled classes.
  """
  cumulative = np.cumsum(rows, axis=1)
  # Rounding can leave the last entry just below 1: the top class then keeps
  # its full probability mass.
  cumulative[:, -1] = 1.0
  uniform = rng.random(rows.shape[0])
  return np.sum(cumulative <= uniform[:, None], axis=1).astype(np.int32)


def noisy_labels(
    clean: np.ndarray,
    noisy: np.ndarray,
    transition: np.ndarray | None,
    rows: np.ndarray,
) -> NoisyLabels:
  """The result, from the ``(n, c)`` rows the noisy labels were drawn from."""
  if not clean.size:
    return NoisyLabels(noisy, 0.0, transition, 0.0)
  keep = rows[np.arange(clean.size), clean]
  return NoisyLabels(
      noisy, float(np.mean(noisy != clean)), transition,
      float(1.0 - np.mean(keep)),
  )
