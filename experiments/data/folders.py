"""The real-noise datasets read from their release folders.

Clothing1M, WebVision (and its mini subset), Food-101N and ANIMAL-10N come
as trees of JPEGs with list files, too large to hold in memory: their
readers (``experiments/data/releases/``) return image paths and labels, and
the input pipeline's workers decode the images (``image_ops``). Reading is
fast and pure: list files and one directory listing per image folder, no
image opened. Every problem with the files is one
:class:`experiments.errors.UserError` line naming the file (and the line)
before any training.

  dataset = read_folder_dataset("clothing1m", "/data/clothing1m")
  dataset.train.paths[0], dataset.train.labels[0]
"""

import functools
import os

import numpy as np

from experiments import errors
from experiments.data import specs
from experiments.data.image_list import FolderDataset
from experiments.data.image_list import ImageList
from experiments.data.releases import animal10n
from experiments.data.releases import clothing1m
from experiments.data.releases import food101n
from experiments.data.releases import webvision

__all__ = [
    "FolderDataset", "ImageList", "LAYOUTS", "balanced_subsample",
    "read_folder_dataset",
]

# Reader of each `DatasetSpec.layout`.
LAYOUTS = {
    "clothing1m": clothing1m.read,
    "webvision": functools.partial(
        webvision.read, sources=("google", "flickr"),
        num_classes=webvision.NUM_WEBVISION_CLASSES, name="webvision",
    ),
    "webvision_mini": functools.partial(
        webvision.read, sources=("google",), num_classes=50,
        name="webvision_mini",
    ),
    "food101n": food101n.read,
    "animal10n": animal10n.read,
}
# Optional folders and the layouts that read them.
_OPTIONAL_DIRS = {
    "imagenet_val_dir": ("webvision", "webvision_mini"),
    "food101_dir": ("food101n",),
}


def balanced_subsample(
    labels: np.ndarray,
    num_examples: int,
    num_classes: int,
    rng: np.random.Generator,
) -> np.ndarray:
  """Indices of a random subset with the same number of images per class.

  Each class gets ``num_examples // num_classes`` images (the first
  ``num_examples % num_classes`` classes one more), or all it has if fewer,
  so the subset can be smaller than ``num_examples``: the rule of the
  Clothing1M literature that trains on a class-balanced draw of the noisy
  labels (e.g. DivideMix's ``dataloader_clothing1M.py``, Li et al. 2020).
  Drawing again each epoch with a new ``rng`` gives its per-epoch subsets.

  Args:
    labels: ``(n,)`` int labels.
    num_examples: wanted subset size.
    num_classes: number of classes.
    rng: numpy generator.

  Returns:
    Sorted int64 indices into ``labels``.
  """
  quota = np.full(num_classes, num_examples // num_classes)
  quota[: num_examples % num_classes] += 1
  chosen = []
  for c in range(num_classes):
    members = np.flatnonzero(labels == c)
    take = min(int(quota[c]), len(members))
    chosen.append(rng.choice(members, take, replace=False))
  return np.sort(np.concatenate(chosen))


def _subsample(
    train: ImageList,
    num_examples: int,
    num_classes: int,
    balanced: bool,
    seed: int,
) -> ImageList:
  rng = np.random.default_rng(seed)
  if balanced:
    indices = balanced_subsample(train.labels, num_examples, num_classes, rng)
  elif num_examples >= len(train.paths):
    return train
  else:
    indices = np.sort(rng.choice(len(train.paths), num_examples, replace=False))
  return train.take(indices)


def read_folder_dataset(
    name: str,
    data_dir: str | None,
    *,
    imagenet_val_dir: str | None = None,
    food101_dir: str | None = None,
    num_train_examples: int | None = None,
    balanced: bool = False,
    seed: int = 0,
) -> FolderDataset:
  """Reads a real-noise dataset from its release folder.

  Args:
    name: dataset name whose spec has a ``layout`` (any spelling
      ``specs.canonical_name`` takes).
    data_dir: the release's root folder (see each reader's docstring for
      the layout).
    imagenet_val_dir: WebVision only: an ILSVRC12 validation folder, tested
      as ``extra_tests["imagenet_val"]`` on the dataset's classes.
    food101_dir: Food-101N only: the Food-101 release folder for the test
      split; by default ``food-101`` inside or beside ``data_dir``.
    num_train_examples: keep a random subset of this many training images
      (seeded by ``seed``; indices keep the list's order).
    balanced: with ``num_train_examples``, draw the subset class-balanced
      (:func:`balanced_subsample`).
    seed: seed of the subset.

  Returns:
    The dataset's image lists.

  Raises:
    UserError: an unknown or non-folder dataset, a bad argument, or any
      problem with the release's files (one line naming file and line).
  """
  spec = specs.get_spec(name)
  if spec.layout is None:
    folder_names = sorted(n for n, s in specs.SPECS.items() if s.layout)
    raise errors.UserError(
        f"{spec.name} is not read from release folders; folder datasets:"
        f" {folder_names}."
    )
  optional = {"imagenet_val_dir": imagenet_val_dir, "food101_dir": food101_dir}
  for field, value in optional.items():
    if value is not None and spec.layout not in _OPTIONAL_DIRS[field]:
      raise errors.UserError(
          f"{field} is for {' / '.join(_OPTIONAL_DIRS[field])}, not"
          f" {spec.name}."
      )
  if num_train_examples is not None and num_train_examples < 1:
    raise errors.UserError(
        f"num_train_examples must be positive, got {num_train_examples}."
    )
  if balanced and num_train_examples is None:
    raise errors.UserError("balanced subsampling needs num_train_examples.")
  if not data_dir:
    raise errors.UserError(f"{spec.name} needs data_dir, its release folder.")
  if not os.path.isdir(data_dir):
    raise errors.MissingDataError(
        f"{data_dir}: no such folder (data_dir of {spec.name})."
    )
  kwargs = {k: v for k, v in optional.items() if v is not None}
  dataset = LAYOUTS[spec.layout](data_dir, **kwargs)
  if num_train_examples is not None:
    dataset = dataset._replace(
        train=_subsample(
            dataset.train, num_train_examples, dataset.num_classes, balanced,
            seed,
        )
    )
  return dataset

