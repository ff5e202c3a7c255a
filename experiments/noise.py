"""Synthetic label-noise models used by the CDR experiments.

The four models of the CDR paper (Xia et al., ICLR 2021). The first three
are defined by a class-level row-stochastic transition matrix
``T[i, j] = p(noisy = j | clean = i)``:

* ``symmetric``: keep with probability ``1 - n``; otherwise a uniformly drawn
  *other* class (``n / (c - 1)`` off the diagonal).
* ``pairflip``: keep with probability ``1 - n``; otherwise ``(i + 1) % c``.
* ``asymmetric``: a fixed, dataset-specific map of look-alike classes; a mapped
  class flips to its partner with probability ``n``, other classes never flip.
* ``instance``: instance-dependent noise (Xia et al., 2020), one transition
  row per sample, so there is no class-level matrix.

Every generator samples each noisy label independently from its row with one
uniform draw per sample (vectorized inverse-CDF), is seeded through
``np.random.default_rng`` so that the same seed gives the same labels on any
machine, and reports the realized noise rate beside the labels.

References:
  Xia, Liu, Han, Gong, Wang, Ge, Chang. "Robust early-learning: Hindering the
  memorization of noisy labels". ICLR 2021.
  Xia, Liu, Han, Wang, Gong, Liu, Niu, Tao, Sugiyama. "Part-dependent label
  noise: Towards instance-dependent label noise". NeurIPS 2020.
"""

from typing import NamedTuple

import numpy as np

NOISE_TYPES = ("symmetric", "pairflip", "asymmetric", "instance")
CLEAN = "none"

# Spread of the per-sample flip rate in instance-dependent noise (Xia et al.).
INSTANCE_FLIP_RATE_STD = 0.1


def _cifar100_map() -> dict[int, int]:
  """CIFAR-100: in each block of 5 consecutive classes, i -> next, cyclic."""
  return {i: 5 * (i // 5) + (i + 1) % 5 for i in range(100)}


# (number of classes, clean -> noisy) per dataset; the pairs swap classes that
# look alike (e.g. MNIST 7 and 2, CIFAR-10 truck and automobile).
ASYMMETRIC_MAPS: dict[str, tuple[int, dict[int, int]]] = {
    "mnist": (10, {2: 7, 3: 8, 5: 6, 6: 5}),
    "fashion_mnist": (10, {0: 6, 2: 4, 5: 7, 7: 5}),
    "cifar10": (10, {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}),
    "cifar100": (100, _cifar100_map()),
}


class NoisyLabels(NamedTuple):
  """Noisy labels together with what is needed to analyse them.

  Attributes:
    labels: ``(n,)`` int32 noisy labels.
    realized_rate: fraction of labels that differ from the clean ones; it
      fluctuates around the requested rate because flips are sampled.
    transition: ``(c, c)`` row-stochastic ``T[i, j] = p(noisy=j | clean=i)``,
      or ``None`` for instance-dependent noise, which has one row per sample.
  """

  labels: np.ndarray
  realized_rate: float
  transition: np.ndarray | None


def _check_num_classes(num_classes: int) -> None:
  if isinstance(num_classes, bool) or not isinstance(
      num_classes, (int, np.integer)
  ):
    raise ValueError(f"num_classes must be an int, got {num_classes!r}.")
  if num_classes < 2:
    raise ValueError(f"num_classes must be at least 2, got {num_classes}.")


def _check_rate(rate: float) -> None:
  if not 0.0 <= rate < 1.0:  # Also rejects NaN.
    raise ValueError(f"noise rate must be in [0, 1), got {rate!r}.")


def _check_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Returns ``labels`` as int32 after checking shape, dtype and range."""
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"labels must be 1-D, got shape {labels.shape}.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers, got dtype {labels.dtype}.")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(
        f"labels must lie in [0, {num_classes}) for num_classes={num_classes},"
        f" got values in [{labels.min()}, {labels.max()}]."
    )
  return labels.astype(np.int32)


def _check_dataset_map(dataset: str | None, num_classes: int) -> dict[int, int]:
  """Returns the asymmetric map of ``dataset`` after checking it fits."""
  if dataset not in ASYMMETRIC_MAPS:
    raise ValueError(
        f"asymmetric noise has no class map for dataset {dataset!r}; maps"
        f" exist for {sorted(ASYMMETRIC_MAPS)}."
    )
  map_classes, mapping = ASYMMETRIC_MAPS[dataset]
  if num_classes != map_classes:
    raise ValueError(
        f"the asymmetric map of {dataset!r} is defined for {map_classes}"
        f" classes, got num_classes={num_classes}."
    )
  return mapping


def transition_matrix(
    noise_type: str, rate: float, num_classes: int, dataset: str | None = None
) -> np.ndarray:
  """Builds the class-level transition matrix of a noise model.

  Args:
    noise_type: ``"symmetric"``, ``"pairflip"``, ``"asymmetric"`` or
      ``"none"`` (identity).
    rate: noise rate ``n`` in ``[0, 1)``.
    num_classes: number of classes ``c``.
    dataset: dataset whose class map defines ``"asymmetric"`` noise; one of
      ``ASYMMETRIC_MAPS``. Ignored by the other models.

  Returns:
    ``(c, c)`` float64 row-stochastic ``T[i, j] = p(noisy = j | clean = i)``.

  Raises:
    ValueError: on an invalid rate or class count, an unknown noise type, a
      dataset without an asymmetric map, or ``"instance"`` (which has no
      class-level matrix).
  """
  _check_num_classes(num_classes)
  _check_rate(rate)
  eye = np.eye(num_classes)
  if noise_type == CLEAN:
    return eye
  if noise_type == "symmetric":
    off_diagonal = np.full((num_classes, num_classes), rate / (num_classes - 1))
    return np.where(eye == 1, 1.0 - rate, off_diagonal)
  if noise_type == "pairflip":
    return (1.0 - rate) * eye + rate * np.roll(eye, 1, axis=1)
  if noise_type == "asymmetric":
    matrix = eye.copy()
    for clean, noisy in _check_dataset_map(dataset, num_classes).items():
      matrix[clean, clean] = 1.0 - rate
      matrix[clean, noisy] = rate
    return matrix
  if noise_type == "instance":
    raise ValueError(
        "instance noise has one transition row per sample, not a class-level"
        " transition matrix."
    )
  raise _unknown_noise_type(noise_type)


def _unknown_noise_type(noise_type: str) -> ValueError:
  return ValueError(
      f"unknown noise type {noise_type!r}; valid types are"
      f" {(CLEAN,) + NOISE_TYPES}."
  )


def _sample_rows(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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


def _noisy_labels(
    clean: np.ndarray, noisy: np.ndarray, transition: np.ndarray | None
) -> NoisyLabels:
  realized = float(np.mean(noisy != clean)) if clean.size else 0.0
  return NoisyLabels(noisy, realized, transition)


def _from_transition(
    labels: np.ndarray,
    transition: np.ndarray,
    num_classes: int,
    seed: int,
) -> NoisyLabels:
  """Samples each noisy label from the row ``transition[clean label]``."""
  labels = _check_labels(labels, num_classes)
  noisy = _sample_rows(transition[labels], np.random.default_rng(seed))
  return _noisy_labels(labels, noisy, transition)


def symmetric_noise(
    labels: np.ndarray, rate: float, num_classes: int, seed: int
) -> NoisyLabels:
  """Flips each label with probability ``rate`` to a uniform other class.

  Args:
    labels: ``(n,)`` integer clean labels in ``[0, num_classes)``.
    rate: noise rate in ``[0, 1)``.
    num_classes: number of classes (at least 2).
    seed: seed of ``np.random.default_rng``.

  Returns:
    The noisy labels, realized rate and transition matrix.
  """
  transition = transition_matrix("symmetric", rate, num_classes)
  return _from_transition(labels, transition, num_classes, seed)


def pairflip_noise(
    labels: np.ndarray, rate: float, num_classes: int, seed: int
) -> NoisyLabels:
  """Flips each label with probability ``rate`` to the next class (cyclic).

  A harder noise than symmetric: every flip of a class lands on the same
  wrong class, which a model can learn as if it were a pattern. Arguments
  and result as in :func:`symmetric_noise`.
  """
  transition = transition_matrix("pairflip", rate, num_classes)
  return _from_transition(labels, transition, num_classes, seed)


def asymmetric_noise(
    labels: np.ndarray, rate: float, num_classes: int, dataset: str, seed: int
) -> NoisyLabels:
  """Flips mapped classes to their look-alike partner with probability ``rate``.

  Only classes in the dataset's map can flip, so the realized rate over the
  whole set is ``rate`` times the fraction of samples in mapped classes.

  Args:
    labels: ``(n,)`` integer clean labels in ``[0, num_classes)``.
    rate: noise rate in ``[0, 1)``.
    num_classes: number of classes; must match the dataset's map.
    dataset: one of ``ASYMMETRIC_MAPS`` (mnist, fashion_mnist, cifar10,
      cifar100).
    seed: seed of ``np.random.default_rng``.

  Returns:
    The noisy labels, realized rate and transition matrix.
  """
  transition = transition_matrix("asymmetric", rate, num_classes, dataset)
  return _from_transition(labels, transition, num_classes, seed)


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
  """Flattens images to unit-norm float32 rows for instance-dependent noise.

  Pixels are scaled to ``[0, 1]`` and each row is divided by its L2 norm, as
  the reference implementation does. With unit-norm rows ``x @ W`` has
  standard-normal logits whatever the image size, so the flip target depends
  on the image without the softmax collapsing to a one-hot choice (raw
  784-pixel rows give logits with a standard deviation near 10). All-zero
  images stay zero, giving a uniform choice among the other classes.

  Args:
    features: ``(n, ...)`` images, uint8 in ``[0, 255]`` or floats in
      ``[0, 1]``.

  Returns:
    ``(n, d)`` float32 unit-norm (or zero) rows.
  """
  features = np.asarray(features)
  # One float32 copy, then in place: CIFAR's train set is already 600 MB.
  flat = features.reshape(features.shape[0], -1).astype(np.float32)
  if np.issubdtype(features.dtype, np.integer):
    flat /= 255.0
  norms = np.linalg.norm(flat, axis=1, keepdims=True)
  flat /= np.where(norms > 0, norms, 1.0)
  return flat


def instance_noise(
    features: np.ndarray,
    labels: np.ndarray,
    rate: float,
    num_classes: int,
    seed: int,
) -> NoisyLabels:
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
    features: ``(n, ...)`` images; flattened and normalized by
      :func:`instance_features`.
    labels: ``(n,)`` integer clean labels in ``[0, num_classes)``.
    rate: mean flip rate in ``[0, 1)``.
    num_classes: number of classes (at least 2).
    seed: seed of ``np.random.default_rng``; the flip rates, projections and
      label draws use independent child streams.

  Returns:
    The noisy labels, realized rate and ``transition=None``.
  """
  _check_num_classes(num_classes)
  _check_rate(rate)
  labels = _check_labels(labels, num_classes)
  features = np.asarray(features)
  if features.ndim < 1 or features.shape[0] != labels.shape[0]:
    raise ValueError(
        f"features must have one row per label: got {features.shape[:1]}"
        f" rows for {labels.shape[0]} labels."
    )
  if rate == 0.0:
    return NoisyLabels(labels, 0.0, None)
  rate_rng, projection_rng, label_rng = (
      np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
  )
  flip_rate = truncated_normal(
      rate, INSTANCE_FLIP_RATE_STD, labels.shape[0], rate_rng
  )
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
  noisy = _sample_rows(rows, label_rng)
  return _noisy_labels(labels, noisy, None)


def add_noise(
    noise_type: str,
    *,
    labels: np.ndarray,
    rate: float,
    num_classes: int,
    seed: int,
    features: np.ndarray | None = None,
    dataset: str | None = None,
) -> NoisyLabels:
  """Applies the named noise model (or none) to clean labels.

  Args:
    noise_type: one of ``NOISE_TYPES`` or ``"none"``.
    labels: ``(n,)`` integer clean labels in ``[0, num_classes)``.
    rate: noise rate in ``[0, 1)``; must be 0 for ``"none"``. Rate 0 returns
      the clean labels for every model.
    num_classes: number of classes (at least 2).
    seed: seed of ``np.random.default_rng``.
    features: ``(n, ...)`` images; required by ``"instance"``.
    dataset: dataset name; required by ``"asymmetric"``.

  Returns:
    The noisy labels, realized rate and transition matrix (identity for
    ``"none"``, ``None`` for ``"instance"``).

  Raises:
    ValueError: on an unknown noise type, a missing ``features``/``dataset``,
      or any invalid argument of the chosen model.
  """
  if noise_type == CLEAN:
    if rate != 0:
      raise ValueError(f"noise type 'none' needs rate 0, got {rate!r}.")
    transition = transition_matrix(CLEAN, 0.0, num_classes)
    return _from_transition(labels, transition, num_classes, seed)
  if noise_type == "symmetric":
    return symmetric_noise(labels, rate, num_classes, seed)
  if noise_type == "pairflip":
    return pairflip_noise(labels, rate, num_classes, seed)
  if noise_type == "asymmetric":
    if dataset is None:
      raise ValueError("asymmetric noise needs the dataset name (dataset=...).")
    return asymmetric_noise(labels, rate, num_classes, dataset, seed)
  if noise_type == "instance":
    if features is None:
      raise ValueError("instance noise needs the images (features=...).")
    return instance_noise(features, labels, rate, num_classes, seed)
  raise _unknown_noise_type(noise_type)
