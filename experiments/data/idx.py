"""MNIST-format IDX files (gzipped or not), e.g. the Debian Fashion-MNIST package."""

import gzip
import os

import numpy as np

from experiments import errors
from experiments.data.dataset import Split

# Where `apt-get install dataset-fashion-mnist` puts the IDX files.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC = 2051  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # unsigned bytes, 1 dimension


def _read_bytes(path: str) -> bytes:
  """Reads a file, decompressing ``.gz``; corrupt archives raise ValueError."""
  if not path.endswith(".gz"):
    with open(path, "rb") as f:
      return f.read()
  try:
    with gzip.open(path, "rb") as f:
      return f.read()
  except (EOFError, OSError) as err:  # Truncated or not gzip at all.
    raise errors.UserError(f"{path}: corrupt gzip file ({err}).") from err


def read_idx(path: str, expected_magic: int) -> np.ndarray:
  """Parses one IDX file of unsigned bytes (the MNIST file format).

  The header is a big-endian int32 magic number (``0x08`` for unsigned
  bytes, then the number of dimensions) followed by one big-endian int32 per
  dimension. Every check names the file, so a truncated download is caught
  here rather than as a strange shape later.

  Args:
    path: file path, gzipped if it ends in ``.gz``.
    expected_magic: 2051 for images (3 dimensions), 2049 for labels (1).

  Returns:
    uint8 array of the header's shape.

  Raises:
    ValueError: on a wrong magic number, a truncated header or a payload
      whose size differs from what the header says.
  """
  data = _read_bytes(path)
  if len(data) < 4:
    raise errors.UserError(f"{path}: truncated IDX header ({len(data)} bytes).")
  magic = int.from_bytes(data[:4], "big")
  if magic != expected_magic:
    raise errors.UserError(
        f"{path}: bad IDX magic number {magic}, expected {expected_magic};"
        " not an MNIST-format file of this kind, or corrupt."
    )
  ndim = expected_magic & 0xFF
  header_size = 4 * (1 + ndim)
  if len(data) < header_size:
    raise errors.UserError(f"{path}: truncated IDX header ({len(data)} bytes).")
  shape = tuple(np.frombuffer(data, ">u4", count=ndim, offset=4).tolist())
  expected_size = header_size + int(np.prod(shape))
  if len(data) != expected_size:
    problem = "truncated" if len(data) < expected_size else "has trailing data"
    raise errors.UserError(
        f"{path}: IDX file {problem}: header says shape {shape}"
        f" ({expected_size} bytes), file has {len(data)} bytes."
    )
  return np.frombuffer(data, np.uint8, offset=header_size).reshape(shape)


def _find_idx_file(data_dir: str, stem: str) -> str:
  for candidate in (stem, stem + ".gz"):
    path = os.path.join(data_dir, candidate)
    if os.path.isfile(path):
      return path
  stems = ", ".join(s for pair in IDX_FILES.values() for s in pair)
  raise errors.MissingDataError(
      f"no {stem} or {stem}.gz in {data_dir}. Put the four MNIST-format IDX"
      f" files there ({stems}, gzipped or not). For Fashion-MNIST,"
      " `apt-get install dataset-fashion-mnist` installs them in"
      f" {DEBIAN_FASHION_MNIST_DIR}."
  )


def load_split(data_dir: str, split: str) -> Split:
  images_path, labels_path = (
      _find_idx_file(data_dir, stem) for stem in IDX_FILES[split]
  )
  images = read_idx(images_path, _IDX_IMAGES_MAGIC)
  labels = read_idx(labels_path, _IDX_LABELS_MAGIC)
  if images.shape[0] != labels.shape[0]:
    raise errors.UserError(
        f"{images_path} has {images.shape[0]} images but {labels_path} has"
        f" {labels.shape[0]} labels."
    )
  return Split(images[..., None], labels.astype(np.int32))
