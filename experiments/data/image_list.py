"""Image lists: what a folder dataset's readers return, and how they check it.

A release of a real-noise dataset is a tree of JPEGs plus text files that
list them with labels. Its reader (``experiments/data/releases/``) turns the
files into :class:`ImageList` arrays without opening any image; the helpers
here give every reader the same errors, one line naming the file and the
line: a missing file or folder, a malformed line, a label out of range, a
listed image that does not exist, a class without images.
"""

import os
from typing import Iterable, NamedTuple

import numpy as np

from experiments import errors


# What torchvision's ImageFolder counts as an image, less the rare formats.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def is_image_file(name: str) -> bool:
  """Whether a file name has an image extension (any case)."""
  return name.lower().endswith(IMAGE_EXTENSIONS)


class ImageList(NamedTuple):
  """The images of one split, with their labels.

  Attributes:
    paths: ``(n,)`` unicode array of absolute file paths (one buffer, not
      Python objects, so forked input workers share it without copying).
    labels: ``(n,)`` int32 labels the split is trained or evaluated on: the
      release's noisy labels for training, its clean labels for evaluation.
    clean_labels: ``(n,)`` int32 verified label where the release has one,
      -1 where unknown. Only for reporting (memorization, label precision),
      never for training.
    verified: ``(n,)`` int8, whether the release says ``labels`` is right:
      1 yes, 0 no, -1 unknown. Food-101N verifies labels without giving the
      right class, so a wrong label can be known while its clean label
      is not.
  """

  paths: np.ndarray
  labels: np.ndarray
  clean_labels: np.ndarray
  verified: np.ndarray

  def take(self, indices: np.ndarray) -> "ImageList":
    """The images at ``indices``, in that order."""
    return ImageList(*(field[indices] for field in self))


class FolderDataset(NamedTuple):
  """A real-noise dataset read from its release folders.

  Attributes:
    name: canonical dataset name (a key of ``specs.SPECS``).
    class_names: one name per class, in label order.
    train: training images with their noisy labels.
    val: the literature's selection set (e.g. Clothing1M's clean validation
      list), or None where the protocol holds out a noisy split of ``train``.
    test: the literature's test set (clean labels).
    extra_tests: further test sets by name, e.g. ``"imagenet_val"``.
    val_kind: which set selects the reported epoch: ``"clean_val"`` or
      ``"noisy_split"``.
  """

  name: str
  class_names: tuple[str, ...]
  train: ImageList
  val: ImageList | None
  test: ImageList
  extra_tests: dict[str, ImageList]
  val_kind: str

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def make_list(
    paths: Iterable[str],
    labels: Iterable[int],
    clean_labels: Iterable[int] | None = None,
    verified: Iterable[int] | None = None,
) -> ImageList:
  """An :class:`ImageList`; clean labels and verification default to unknown."""
  paths = np.array(list(paths), dtype=str)
  labels = np.fromiter(labels, np.int32, len(paths))
  unknown = np.full(len(paths), -1)
  clean = unknown if clean_labels is None else list(clean_labels)
  ok = unknown if verified is None else list(verified)
  return ImageList(
      paths, labels, np.asarray(clean, np.int32), np.asarray(ok, np.int8)
  )


def clean_list(paths: Iterable[str], labels: Iterable[int]) -> ImageList:
  """An evaluation set: its labels are the clean ones, all verified."""
  image_list = make_list(paths, labels)
  return image_list._replace(
      clean_labels=image_list.labels.copy(),
      verified=np.ones(len(image_list.paths), np.int8),
  )


def line_error(path: str, line: int, problem: str) -> errors.UserError:
  """The one-line error for line ``line`` (1-based) of list file ``path``."""
  return errors.UserError(f"{path}, line {line}: {problem}")


def require_dir(path: str, what: str) -> str:
  """``path`` if it is a folder, else a MissingDataError saying what it is."""
  if not os.path.isdir(path):
    raise errors.MissingDataError(f"{path}: no such folder ({what}).")
  return path


def first_existing(paths: Iterable[str], what: str) -> str:
  """The first of ``paths`` that exists; a MissingDataError naming all."""
  paths = list(paths)
  for path in paths:
    if os.path.exists(path):
      return path
  raise errors.MissingDataError(
      f"{what} not found; looked for {' and '.join(paths)}."
  )


def read_lines(path: str, header: str | None = None) -> list[tuple[int, str]]:
  """The non-blank lines of a text file, stripped, with 1-based numbers.

  Args:
    path: list file.
    header: a first line to skip when the file starts with it (the
      Food-101N files have one).

  Raises:
    MissingDataError: the file does not exist.
    UserError: the file is not UTF-8 text.
  """
  try:
    with open(path, encoding="utf-8") as f:
      lines = [(n, text.strip()) for n, text in enumerate(f, start=1)]
  except FileNotFoundError as err:
    raise errors.MissingDataError(f"{path}: no such file.") from err
  except UnicodeDecodeError as err:
    raise errors.UserError(f"{path}: not a UTF-8 text file ({err}).") from err
  if header is not None and lines and lines[0][1] == header:
    lines = lines[1:]
  return [(n, text) for n, text in lines if text]


def parse_label(path: str, line: int, text: str, num_classes: int) -> int:
  """``text`` as a class index in ``[0, num_classes)``, or a line error."""
  try:
    label = int(text)
  except ValueError:
    raise line_error(path, line, f"label {text!r} is not an integer.") from None
  if not 0 <= label < num_classes:
    raise line_error(
        path, line, f"label {label} is outside [0, {num_classes})."
    )
  return label


def path_and_label(
    path: str, line: int, text: str, num_classes: int
) -> tuple[str, int]:
  """A ``<image path> <label>`` line, the form of Clothing1M and WebVision."""
  fields = text.split()
  if len(fields) != 2:
    raise line_error(
        path, line, f"expected '<image path> <label>', got {text!r}."
    )
  return fields[0], parse_label(path, line, fields[1], num_classes)


def check_images_exist(
    paths: Iterable[str], lines: Iterable[int], list_file: str
) -> None:
  """Raises a line error for the first listed image that does not exist.

  One ``os.listdir`` per folder rather than one ``stat`` per image: a
  million images in a thousand folders are checked in about a second.

  Args:
    paths: image paths.
    lines: the list file's line number of each path.
    list_file: the file that lists them, for the error.
  """
  listings: dict[str, frozenset[str]] = {}
  for path, line in zip(paths, lines):
    folder, name = os.path.split(path)
    names = listings.get(folder)
    if names is None:
      try:
        names = frozenset(os.listdir(folder))
      except OSError:
        names = frozenset()
      listings[folder] = names
    if name not in names:
      raise line_error(list_file, line, f"image {path} does not exist.")


def check_classes_present(
    labels: np.ndarray, class_names: tuple[str, ...], source: str
) -> None:
  """Raises when a class has no image in ``labels`` (read from ``source``)."""
  counts = np.bincount(labels, minlength=len(class_names))
  empty = np.flatnonzero(counts == 0)
  if empty.size:
    shown = ", ".join(f"{c} ({class_names[c]})" for c in empty[:5])
    more = f" and {empty.size - 5} more" if empty.size > 5 else ""
    raise errors.UserError(
        f"{source}: no image of class {shown}{more}; every class needs at"
        " least one."
    )
