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

import numpy as np

from experiments import errors
from experiments.data import instance_noise as instance
from experiments.data import label_sampling
from experiments.data.label_sampling import NoisyLabels

NOISE_TYPES = ("symmetric", "pairflip", "asymmetric", "instance")
CLEAN = "none"
# The labels of a real-noise release, as they are (folder datasets).
REAL = "real"

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




def _check_dataset_map(dataset: str | None, num_classes: int) -> dict[int, int]:
  """Returns the asymmetric map of ``dataset`` after checking it fits."""
  if dataset not in ASYMMETRIC_MAPS:
    raise errors.UserError(
        f"asymmetric noise has no class map for dataset {dataset!r}; maps"
        f" exist for {sorted(ASYMMETRIC_MAPS)}."
    )
  map_classes, mapping = ASYMMETRIC_MAPS[dataset]
  if num_classes != map_classes:
    raise errors.UserError(
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
  label_sampling.check_num_classes(num_classes)
  label_sampling.check_rate(rate)
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
    raise errors.UserError(
        "instance noise has one transition row per sample, not a class-level"
        " transition matrix."
    )
  raise _unknown_noise_type(noise_type)


def _unknown_noise_type(noise_type: str) -> ValueError:
  return ValueError(
      f"unknown noise type {noise_type!r}; valid types are"
      f" {(CLEAN,) + NOISE_TYPES}."
  )



def _from_transition(
    labels: np.ndarray,
    transition: np.ndarray,
    num_classes: int,
    seed: int,
) -> NoisyLabels:
  """Samples each noisy label from the row ``transition[clean label]``."""
  labels = label_sampling.check_labels(labels, num_classes)
  rows = transition[labels]
  noisy = label_sampling.sample_rows(rows, np.random.default_rng(seed))
  return label_sampling.noisy_labels(labels, noisy, transition, rows)


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
      raise errors.UserError(f"noise type 'none' needs rate 0, got {rate!r}.")
    transition = transition_matrix(CLEAN, 0.0, num_classes)
    return _from_transition(labels, transition, num_classes, seed)
  if noise_type == "symmetric":
    return symmetric_noise(labels, rate, num_classes, seed)
  if noise_type == "pairflip":
    return pairflip_noise(labels, rate, num_classes, seed)
  if noise_type == "asymmetric":
    if dataset is None:
      raise errors.UserError("asymmetric noise needs the dataset name (dataset=...).")
    return asymmetric_noise(labels, rate, num_classes, dataset, seed)
  if noise_type == "instance":
    if features is None:
      raise errors.UserError("instance noise needs the images (features=...).")
    return instance.instance_noise(features, labels, rate, num_classes, seed)
  raise _unknown_noise_type(noise_type)

