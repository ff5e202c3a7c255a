"""The protocol of the real-noise folder datasets: their own labels, their
own selection and test sets.

A folder dataset (Clothing1M, WebVision, Food-101N, ANIMAL-10N) ships noisy
labels, so no synthetic noise is drawn (``noise_type="real"``). The epoch is
selected on the literature's selection set where the release has one
(Clothing1M's clean validation list) and on a seeded noisy split of the
training list otherwise (as the synthetic protocol does); ``summary.json``
says which (``selected_on``). Clean labels of training images - where the
release verifies some (Clothing1M's ``clean_label_kv.txt``, Food-101N's
verification lists) - only feed the memorization and label-precision
reports, never training.

Clean-label codes in the returned ``NoisyDataset``: a class, or
``UNKNOWN`` (-1, nothing verified), or ``KNOWN_WRONG`` (-2, the release
says the label is wrong without naming the right class).
"""

import ml_collections
import numpy as np

from experiments import errors
from experiments.data import folders
from experiments.data import noise
from experiments.data.protocol import NoisyDataset
from experiments.data.protocol import split_indices

UNKNOWN = -1
KNOWN_WRONG = -2


def _clean_codes(image_list: folders.ImageList) -> np.ndarray:
  codes = np.where(image_list.verified == 1, image_list.labels,
                   image_list.clean_labels).astype(np.int32)
  return np.where((image_list.verified == 0) & (codes < 0), KNOWN_WRONG, codes)


def make_folder_dataset(config: ml_collections.ConfigDict) -> NoisyDataset:
  """Reads the configured folder dataset and applies its protocol."""
  if config.noise_type != noise.REAL:
    raise errors.UserError(
        f"{config.dataset} carries its own noisy labels: set "
        f"noise_type='{noise.REAL}' (got {config.noise_type!r})."
    )
  if config.input_pipeline != "grain":
    raise errors.UserError(
        f"{config.dataset} is streamed from disk: set input_pipeline='grain'."
    )
  folder = folders.read_folder_dataset(
      config.dataset, config.data_dir,
      imagenet_val_dir=config.imagenet_val_dir,
      food101_dir=config.food101_dir,
      num_train_examples=config.num_train_examples,
      balanced=config.balanced_subset, seed=config.seed,
  )
  train, val = folder.train, folder.val
  if val is None:
    train_idx, val_idx = split_indices(len(train.labels), config.val_fraction,
                                       config.seed)
    train, val = train.take(train_idx), train.take(val_idx)
  clean = _clean_codes(train)
  known = clean != UNKNOWN
  realized = float(np.mean(clean[known] != train.labels[known])) if known.any() else None
  return NoisyDataset(
      name=folder.name,
      num_classes=folder.num_classes,
      train_images=train.paths,
      train_labels=train.labels,
      train_clean_labels=clean,
      val_images=val.paths,
      val_labels=val.labels,
      val_clean_labels=_clean_codes(val),
      test_images=folder.test.paths,
      test_labels=folder.test.labels,
      noise_type=noise.REAL,
      noise_rate=0.0,
      realized_rate=realized,
      transition=None,
      # The small-loss methods' oracle forget rate: the verified part's
      # noise rate, the only one measurable (None without verification).
      corruption_rate=realized if realized is not None else 0.0,
      extra_tests={name: (l.paths, l.labels)
                   for name, l in folder.extra_tests.items()},
      selected_on=folder.val_kind,
  )
