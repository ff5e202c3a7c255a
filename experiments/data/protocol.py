"""The paper's protocol: label noise on the training set, then a 90/10 split.

:func:`make_noisy_dataset` draws the noise on the whole (optionally
subsampled) training set, so the validation set is as noisy as the training
set - model selection may not see clean labels - and keeps the test set
clean. The clean training labels are kept for analysis (memorization) only.
"""

from typing import NamedTuple

import numpy as np

from experiments import errors
from experiments.data import noise
from experiments.data.dataset import Dataset

# Independent random streams drawn from the same seed (second entropy word).
_SPLIT_STREAM = 1
_SUBSET_STREAM = 2
# A training label whose ground truth nobody verified (negative codes of
# NoisyDataset.train_clean_labels; real_noise.UNKNOWN for folder datasets).
UNKNOWN_LABEL = -1


class NoisyDataset(NamedTuple):
  """A dataset after label noise and the train/validation split.

  The clean labels are kept for memorization metrics only; training and
  model selection must use the noisy ``train_labels`` and ``val_labels``.

  Attributes:
    name: canonical dataset name.
    num_classes: number of classes.
    train_images: ``(n_train, h, w, c)`` uint8, or ``(n_train,)`` image
      file paths (folder datasets, read by the grain input path).
    train_labels: ``(n_train,)`` int32 noisy labels.
    train_clean_labels: ``(n_train,)`` int32 ground truth.
    val_images: ``(n_val, h, w, c)`` uint8.
    val_labels: ``(n_val,)`` int32 noisy labels.
    val_clean_labels: ``(n_val,)`` int32 ground truth.
    test_images: ``(n_test, h, w, c)`` uint8.
    test_labels: ``(n_test,)`` int32 clean labels.
    noise_type: noise model applied (``"none"`` for none).
    noise_rate: requested noise rate.
    realized_rate: fraction of noisy labels over the whole training set
      (before the split), measured against the ground truth (None where
      no ground truth is known).
    transition: ``(c, c)`` transition matrix of the applied noise, or
      ``None`` (instance noise, or labels that were already noisy).
    corruption_rate: the expected fraction of wrong training labels, from
      the noise model (``label_sampling.NoisyLabels.corruption_rate``); for
      labels that were already noisy, the realized rate.
  """

  name: str
  num_classes: int
  train_images: np.ndarray
  train_labels: np.ndarray
  train_clean_labels: np.ndarray
  val_images: np.ndarray
  val_labels: np.ndarray
  val_clean_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  noise_type: str
  noise_rate: float
  realized_rate: float | None
  transition: np.ndarray | None
  corruption_rate: float
  # Further test sets, name -> (images, clean labels), e.g. WebVision's
  # ILSVRC12 validation; and which set selects the reported epoch.
  extra_tests: dict = {}
  selected_on: str = "noisy_split"


def split_indices(
    num_examples: int, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Seeded disjoint train/validation indices covering ``range(num_examples)``.

  Args:
    num_examples: size of the training set.
    val_fraction: fraction held out for validation, in ``(0, 1)``.
    seed: seed; the stream differs from the noise stream of the same seed.

  Returns:
    ``(train_indices, val_indices)``, each sorted, with
    ``round(val_fraction * num_examples)`` validation indices.
  """
  if not 0.0 < val_fraction < 1.0:
    raise errors.UserError(f"val_fraction must be in (0, 1), got {val_fraction!r}.")
  permutation = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(
      num_examples
  )
  num_val = int(round(val_fraction * num_examples))
  if not 0 < num_val < num_examples:
    raise errors.UserError(
        f"val_fraction={val_fraction} of {num_examples} examples leaves"
        f" {num_val} for validation; both splits must be non-empty."
    )
  return np.sort(permutation[num_val:]), np.sort(permutation[:num_val])


def make_noisy_dataset(
    dataset: Dataset,
    noise_type: str,
    noise_rate: float,
    seed: int,
    val_fraction: float = 0.1,
    num_train_examples: int | None = None,
) -> NoisyDataset:
  """Applies label noise to the training set, then splits off validation.

  This is the paper's protocol: the noise is drawn on the whole training set
  so the validation set is as noisy as the training set, which is all that
  model selection may see. The test set stays clean.

  Args:
    dataset: the loaded dataset.
    noise_type: one of ``noise.NOISE_TYPES``, ``"none"`` or ``"real"``.
    noise_rate: noise rate in ``[0, 1)`` (0 for ``"none"`` and ``"real"``).
    seed: seeds the noise and, through an independent stream, the split.
    val_fraction: fraction of the training set held out for validation.
    num_train_examples: if given, the protocol runs on a seeded,
      class-balanced subset of this many training examples (a smaller
      dataset, e.g. one a model can memorize quickly): noise, split and
      validation fraction then apply to the subset.

  Returns:
    The noisy, split dataset. For real-noise datasets (labels loaded with a
    ``label_field``), ``noise_type="real"`` trains on the human labels as
    they are (another noise type applies on top of them); the ground truth
    stays the reference for ``realized_rate`` and memorization, and
    ``transition`` is ``None``.
  """
  train = dataset.train
  if num_train_examples is not None:
    train = _take(train, balanced_subset(
        _ground_truth(train), num_train_examples, dataset.num_classes, seed
    ))
  if noise_type == noise.REAL:
    labels, clean, realized = _as_released(train, noise_rate)
    transition, corruption_rate = None, realized or 0.0
  else:
    noisy = noise.add_noise(
        noise_type,
        labels=train.labels,
        rate=noise_rate,
        num_classes=dataset.num_classes,
        seed=seed,
        features=train.images,
        dataset=dataset.name,
    )
    labels, clean = noisy.labels, _ground_truth(train)
    transition = noisy.transition if train.clean_labels is None else None
    realized = float(np.mean(labels != clean))
    corruption_rate = (
        noisy.corruption_rate if train.clean_labels is None else realized)
  train_idx, val_idx = split_indices(len(clean), val_fraction, seed)
  return NoisyDataset(
      name=dataset.name,
      num_classes=dataset.num_classes,
      train_images=train.images[train_idx],
      train_labels=labels[train_idx],
      train_clean_labels=clean[train_idx],
      val_images=train.images[val_idx],
      val_labels=labels[val_idx],
      val_clean_labels=clean[val_idx],
      test_images=dataset.test.images,
      test_labels=dataset.test.labels,
      noise_type=noise_type,
      noise_rate=noise_rate,
      realized_rate=realized,
      transition=transition,
      corruption_rate=corruption_rate,
  )


def _as_released(split, noise_rate: float):
  """``noise_type="real"``: the labels as the dataset ships them.

  Returns the labels, the ground-truth codes (the split's clean labels, or
  ``UNKNOWN_LABEL`` everywhere when the release has none, as Food-101's)
  and the realized noise rate where the ground truth is known, else None.
  """
  if noise_rate != 0:
    raise errors.UserError(
        f"noise type '{noise.REAL}' trains on the labels as released; it "
        f"needs noise_rate 0, got {noise_rate!r}.")
  clean = split.clean_labels
  if clean is None:
    return split.labels, np.full_like(split.labels, UNKNOWN_LABEL), None
  return split.labels, clean, float(np.mean(split.labels != clean))


def _ground_truth(split):
  return split.labels if split.clean_labels is None else split.clean_labels


def _take(split, indices):
  return split._replace(**{
      field: None if value is None else value[indices]
      for field, value in split._asdict().items()
  })


def balanced_subset(
    labels: np.ndarray, size: int, num_classes: int, seed: int
) -> np.ndarray:
  """Seeded indices of ``size`` examples, as equal per class as possible.

  Every class gets ``size // num_classes`` examples and ``size %
  num_classes`` seeded classes (among those with enough examples) one more;
  a class with too few examples is an error rather than a silently
  unbalanced subset.

  Args:
    labels: ``(n,)`` clean labels.
    size: number of examples to keep, in ``[num_classes, n]``.
    num_classes: number of classes.
    seed: seed; the stream differs from the noise and split streams.

  Returns:
    Sorted indices into ``labels``.
  """
  if not num_classes <= size <= len(labels):
    raise errors.UserError(
        f"num_train_examples must be in [{num_classes}, {len(labels)}], got"
        f" {size}."
    )
  rng = np.random.default_rng([seed, _SUBSET_STREAM])
  members = [np.flatnonzero(labels == c) for c in range(num_classes)]
  base = size // num_classes
  short = [c for c in range(num_classes) if len(members[c]) < base]
  if short:
    raise errors.UserError(
        f"class {short[0]} has {len(members[short[0]])} training examples,"
        f" fewer than the {base} a balanced subset of {size} needs."
    )
  # The size % num_classes extra examples go to seeded classes with room.
  roomy = [c for c in range(num_classes) if len(members[c]) > base]
  extra = set(rng.permutation(roomy)[: size % num_classes].tolist())
  if len(extra) < size % num_classes:
    raise errors.UserError(
        f"only {len(roomy)} classes have more than {base} examples; a"
        f" balanced subset of {size} needs {size % num_classes}."
    )
  chosen = [
      rng.choice(members[c], base + (c in extra), replace=False)
      for c in range(num_classes)
  ]
  return np.sort(np.concatenate(chosen))
