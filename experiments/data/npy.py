"""Local ``.npy`` files in the reference code's layout."""

import os

import numpy as np

from experiments import errors
from experiments.data.dataset import Split

NPY_FILES = {
    "train": ("train_images.npy", "train_labels.npy"),
    "test": ("test_images.npy", "test_labels.npy"),
}


def _to_nhwc(images: np.ndarray, path: str) -> np.ndarray:
  """Brings ``(n,h,w)``, ``(n,h,w,c)`` or ``(n,c,h,w)`` with c in {1,3} to NHWC.

  A 4-D array whose last axis has 1 or 3 entries is taken as channels-last;
  otherwise an axis 1 of 1 or 3 entries is taken as channels-first (PyTorch).
  """
  if images.ndim == 3:
    return images[..., None]
  if images.ndim == 4 and images.shape[-1] in (1, 3):
    return images
  if images.ndim == 4 and images.shape[1] in (1, 3):
    return images.transpose(0, 2, 3, 1)
  raise errors.UserError(
      f"{path}: images must be (n, h, w), (n, h, w, c) or (n, c, h, w) with"
      f" c in {{1, 3}}; got shape {images.shape}."
  )


def load_split(data_dir: str, split: str) -> Split:
  paths = [os.path.join(data_dir, f) for f in NPY_FILES[split]]
  for path in paths:
    if not os.path.isfile(path):
      raise errors.MissingDataError(
          f"missing {path}. The npy source expects"
          f" {', '.join(f for pair in NPY_FILES.values() for f in pair)} in"
          " data_dir (the reference code's layout)."
      )
  images_path, labels_path = paths
  images = np.load(images_path, allow_pickle=False)
  labels = np.load(labels_path, allow_pickle=False)
  if images.dtype != np.uint8:
    raise errors.UserError(
        f"{images_path}: images must be uint8 in [0, 255], got {images.dtype}."
    )
  if labels.ndim == 2 and labels.shape[1] == 1:  # Column vectors are common.
    labels = labels[:, 0]
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise errors.UserError(
        f"{labels_path}: labels must be a 1-D integer array, got shape"
        f" {labels.shape} and dtype {labels.dtype}."
    )
  if images.shape[0] != labels.shape[0]:
    raise errors.UserError(
        f"{images_path} has {images.shape[0]} images but {labels_path} has"
        f" {labels.shape[0]} labels."
    )
  return Split(_to_nhwc(images, images_path), labels.astype(np.int32))
