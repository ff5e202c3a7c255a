"""A clean dataset in memory: images and labels of its training and test splits."""

from typing import NamedTuple

import numpy as np


class Split(NamedTuple):
  """Images and labels of one split.

  Attributes:
    images: ``(n, h, w, c)`` uint8; grayscale has ``c = 1``.
    labels: ``(n,)`` int32 labels as the source gives them (for real-noise
      datasets with a ``label_field``, the human noisy labels).
    clean_labels: ``(n,)`` int32 ground truth when ``labels`` are not clean
      (real-noise datasets), else ``None``.
  """

  images: np.ndarray
  labels: np.ndarray
  clean_labels: np.ndarray | None = None


class Dataset(NamedTuple):
  """A dataset with its training and test splits.

  Attributes:
    name: canonical name, a key of ``specs.SPECS``.
    num_classes: number of classes.
    train: training split.
    test: test split (always clean labels).
  """

  name: str
  num_classes: int
  train: Split
  test: Split
