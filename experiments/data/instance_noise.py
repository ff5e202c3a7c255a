"""Instance-dependent label noise (Xia et al., NeurIPS 2020), as in the CDR code.

References:
  Xia, Liu, Han, Wang, Gong, Liu, Niu, Tao, Sugiyama. "Part-dependent label
  noise: Towards instance-dependent label noise". NeurIPS 2020.
"""

import numpy as np

from experiments import errors
from experiments.data import label_sampling

# Spread of the per-sample flip rate (Xia et al.).
FLIP_RATE_STD = 0.1


def truncated_normal(
    mean: float,
    std: float,
    size: int,
    rng: np.random.Generator,
    low: float = 0.0,
    high: float = 1.0,
) -> np.ndarray:
  """Samples ``N(mean, std^2)`` truncated to ``[low, high]`` by resampling.

  Clipping would pile probability mass on the bounds; redrawing the
  out-of-range entries gives the exact truncated distribution. Each round is
  vectorized and, for a mean inside the interval, keeps at least about half
  of the draws, so only a handful of rounds are needed.

  Args:
    mean: mean of the untruncated normal; must lie in ``[low, high]``.
    std: standard deviation of the untruncated normal.
    size: number of samples.
    rng: numpy generator.
    low: lower bound (inclusive).
    high: upper bound (inclusive).

  Returns:
    ``(size,)`` float64 samples in ``[low, high]``.
  """
  samples = rng.normal(mean, std, size)
  outside = np.flatnonzero((samples < low) | (samples > high))
  while outside.size:
    samples[outside] = rng.normal(mean, std, outside.size)
    outside = outside[(samples[outside] < low) | (samples[outside] > high)]
  return samples


def instance_features(features: np.ndarray) -> np.ndarray:
  """Flattens images to float32 rows of their raw pixel values.

  The reference code projects the raw values (uint8 images cast to float,
  ``x.view(1, -1).mm(W[y])``; xiaoboxia/CDR tools.py l.96-100 and l.188,
  commit 6665a8b): no division by 255, no normalization. With
  values up to 255 the logits ``x @ W`` have a spread in the thousands, so
  the masked softmax is nearly one-hot: each image's flip target is close to
  a fixed function of the image and most of a class's flips go to one class.
  That concentration is what makes this noise hard; rescaling the pixels
  would spread the flips almost uniformly over the other classes.

  Args:
    features: ``(n, ...)`` images (uint8 or float pixel values).

  Returns:
    ``(n, d)`` float32 rows.
  """
  features = np.asarray(features)
  return features.reshape(features.shape[0], -1).astype(np.float32)


def instance_noise(
    features: np.ndarray,
    labels: np.ndarray,
    rate: float,
    num_classes: int,
    seed: int,
) -> label_sampling.NoisyLabels:
  """Instance-dependent noise of Xia et al. (2020).

  Each sample gets its own flip rate ``q_i ~ N(rate, 0.1^2)`` truncated to
  ``[0, 1]``, and its flip target is drawn from ``softmax(x_i @ W[y_i])`` with
  the true class masked out, where ``W[k]`` is a ``(features, classes)``
  standard-normal projection per class. Samples whose images look alike thus
  flip alike. The per-sample row is ``q_i * p_i`` plus ``1 - q_i`` on the true
  class. Rate 0 returns the clean labels (rather than the truncated normal's
  small positive mean) so that rate 0 means clean for every model.

  Vectorized: one matrix product per class and one uniform per sample; the
  60,000-image Fashion-MNIST train set takes well under a second.

  Args:
    features: ``(n, ...)`` images; flattened by :func:`instance_features`.
    labels: ``(n,)`` integer clean labels in ``[0, num_classes)``.
    rate: mean flip rate in ``[0, 1)``.
    num_classes: number of classes (at least 2).
    seed: seed of ``np.random.default_rng``; the flip rates, projections and
      label draws use independent child streams.

  Returns:
    The noisy labels, realized rate and ``transition=None``.
  """
  label_sampling.check_num_classes(num_classes)
  label_sampling.check_rate(rate)
  labels = label_sampling.check_labels(labels, num_classes)
  features = np.asarray(features)
  if features.ndim < 1 or features.shape[0] != labels.shape[0]:
    raise errors.UserError(
        f"features must have one row per label: got {features.shape[:1]}"
        f" rows for {labels.shape[0]} labels."
    )
  if rate == 0.0:
    return label_sampling.NoisyLabels(labels, 0.0, None, 0.0)
  rate_rng, projection_rng, label_rng = (
      np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
  )
  flip_rate = truncated_normal(rate, FLIP_RATE_STD, labels.shape[0], rate_rng)
  x = instance_features(features)
  logits = np.empty((labels.shape[0], num_classes), np.float32)
  for k in range(num_classes):  # One projection at a time bounds memory.
    projection = projection_rng.standard_normal(
        (x.shape[1], num_classes), dtype=np.float32
    )
    members = labels == k
    logits[members] = x[members] @ projection
  rows_index = np.arange(labels.shape[0])
  logits[rows_index, labels] = -np.inf
  logits -= logits.max(axis=1, keepdims=True)
  flip_to = np.exp(logits.astype(np.float64))
  flip_to /= flip_to.sum(axis=1, keepdims=True)
  rows = flip_rate[:, None] * flip_to
  rows[rows_index, labels] += 1.0 - flip_rate
  noisy = label_sampling.sample_rows(rows, label_rng)
  return label_sampling.noisy_labels(labels, noisy, None, rows)
