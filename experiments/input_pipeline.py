"""Data for the CDR experiments: loading, label noise, split, preprocessing.

The whole data set lives in memory as numpy arrays (the largest, CIFAR, is
150 MB of uint8), which keeps the pipeline exact, seedable and free of
TensorFlow. Three sources give the same :class:`Dataset`:

* ``"tfds"``: ``tfds.data_source`` (random access to ArrayRecord files; works
  without TensorFlow). The dataset must already be prepared in ``data_dir``.
* ``"idx"``: a directory of MNIST-format IDX files, gzipped or not
  (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
  ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``), e.g. the
  Debian package ``dataset-fashion-mnist``.
* ``"npy"``: a directory in the layout of the reference code
  (``train_images.npy``, ``train_labels.npy``, ``test_images.npy``,
  ``test_labels.npy``); uint8 images of shape ``(n, h, w)``, ``(n, h, w, c)``
  or ``(n, c, h, w)`` with ``c`` in {1, 3}, integer labels ``(n,)`` or
  ``(n, 1)``.

:func:`make_noisy_dataset` then follows the paper's protocol: noise on the
whole training set, a seeded 90/10 train/validation split (validation labels
stay noisy, since model selection may not see clean labels), clean test set.
:func:`normalize` and :func:`random_crop_flip` are JAX functions meant to run
inside the jitted training step.
"""

import gzip
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments import noise

# Number of classes of every dataset this module knows, by canonical name.
NUM_CLASSES = {
    "mnist": 10,
    "fashion_mnist": 10,
    "cifar10": 10,
    "cifar100": 100,
    "food101": 101,
    "cifar10_n": 10,
    "cifar100_n": 100,
}
_ALIASES = {"fmnist": "fashion_mnist", "f_mnist": "fashion_mnist"}

SOURCES = ("auto", "tfds", "idx", "npy")
# Where `apt-get install dataset-fashion-mnist` puts the IDX files.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

# tfds split names of the training and test sets; Food-101 has no "test".
_TFDS_SPLITS = {"food101": ("train", "validation")}
_DEFAULT_TFDS_SPLITS = ("train", "test")
# Side length used for datasets whose images vary in size when no
# `image_size` is given: 224 is the ResNet-50 input of the paper's Food-101
# run. The Food-101 train split then takes about 11 GB as uint8.
VARIABLE_SIZE_DEFAULT = 224

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC = 2051  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # unsigned bytes, 1 dimension

_NPY_FILES = {
    "train": ("train_images.npy", "train_labels.npy"),
    "test": ("test_images.npy", "test_labels.npy"),
}

# Per-channel (mean, std) of the training images in [0, 1].
_MNIST_STATS = ((0.1307,), (0.3081,))
_FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
_CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
_DEFAULT_STATS = ((0.5,), (0.5,))
NORMALIZATION = {
    "mnist": _MNIST_STATS,
    "fashion_mnist": _FASHION_MNIST_STATS,
    "cifar10": _CIFAR10_STATS,
    "cifar10_n": _CIFAR10_STATS,
    "cifar100": _CIFAR100_STATS,
    "cifar100_n": _CIFAR100_STATS,
}
# Small colour images get the paper's crop + flip augmentation.
_AUGMENTED = frozenset({"cifar10", "cifar100", "cifar10_n", "cifar100_n"})


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
    name: canonical name, a key of ``NUM_CLASSES``.
    num_classes: number of classes.
    train: training split.
    test: test split (always clean labels).
  """

  name: str
  num_classes: int
  train: Split
  test: Split


class NoisyDataset(NamedTuple):
  """A dataset after label noise and the train/validation split.

  The clean labels are kept for memorization metrics only; training and
  model selection must use the noisy ``train_labels`` and ``val_labels``.

  Attributes:
    name: canonical dataset name.
    num_classes: number of classes.
    train_images: ``(n_train, h, w, c)`` uint8.
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
      (before the split), measured against the ground truth.
    transition: ``(c, c)`` transition matrix of the applied noise, or
      ``None`` (instance noise, or labels that were already noisy).
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
  realized_rate: float
  transition: np.ndarray | None


def canonical_name(name: str) -> str:
  """Maps a dataset name to its canonical form, e.g. ``"Fashion-MNIST"``.

  Args:
    name: dataset name, any case, ``-`` or ``_``.

  Returns:
    A key of ``NUM_CLASSES``.

  Raises:
    ValueError: for an unknown dataset, listing the known ones.
  """
  key = name.lower().replace("-", "_")
  key = _ALIASES.get(key, key)
  if key not in NUM_CLASSES:
    raise ValueError(
        f"unknown dataset {name!r}; known datasets: {sorted(NUM_CLASSES)}."
    )
  return key


# ----------------------------------------------------------------------------
# IDX files
# ----------------------------------------------------------------------------


def _read_bytes(path: str) -> bytes:
  """Reads a file, decompressing ``.gz``; corrupt archives raise ValueError."""
  if not path.endswith(".gz"):
    with open(path, "rb") as f:
      return f.read()
  try:
    with gzip.open(path, "rb") as f:
      return f.read()
  except (EOFError, OSError) as err:  # Truncated or not gzip at all.
    raise ValueError(f"{path}: corrupt gzip file ({err}).") from err


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
    raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes).")
  magic = int.from_bytes(data[:4], "big")
  if magic != expected_magic:
    raise ValueError(
        f"{path}: bad IDX magic number {magic}, expected {expected_magic};"
        " not an MNIST-format file of this kind, or corrupt."
    )
  ndim = expected_magic & 0xFF
  header_size = 4 * (1 + ndim)
  if len(data) < header_size:
    raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes).")
  shape = tuple(np.frombuffer(data, ">u4", count=ndim, offset=4).tolist())
  expected_size = header_size + int(np.prod(shape))
  if len(data) != expected_size:
    problem = "truncated" if len(data) < expected_size else "has trailing data"
    raise ValueError(
        f"{path}: IDX file {problem}: header says shape {shape}"
        f" ({expected_size} bytes), file has {len(data)} bytes."
    )
  return np.frombuffer(data, np.uint8, offset=header_size).reshape(shape)


def _find_idx_file(data_dir: str, stem: str) -> str:
  for candidate in (stem, stem + ".gz"):
    path = os.path.join(data_dir, candidate)
    if os.path.isfile(path):
      return path
  stems = ", ".join(s for pair in _IDX_FILES.values() for s in pair)
  raise FileNotFoundError(
      f"no {stem} or {stem}.gz in {data_dir}. Put the four MNIST-format IDX"
      f" files there ({stems}, gzipped or not). For Fashion-MNIST,"
      " `apt-get install dataset-fashion-mnist` installs them in"
      f" {DEBIAN_FASHION_MNIST_DIR}."
  )


def _load_idx_split(data_dir: str, split: str) -> Split:
  images_path, labels_path = (
      _find_idx_file(data_dir, stem) for stem in _IDX_FILES[split]
  )
  images = read_idx(images_path, _IDX_IMAGES_MAGIC)
  labels = read_idx(labels_path, _IDX_LABELS_MAGIC)
  if images.shape[0] != labels.shape[0]:
    raise ValueError(
        f"{images_path} has {images.shape[0]} images but {labels_path} has"
        f" {labels.shape[0]} labels."
    )
  return Split(images[..., None], labels.astype(np.int32))


# ----------------------------------------------------------------------------
# npy files
# ----------------------------------------------------------------------------


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
  raise ValueError(
      f"{path}: images must be (n, h, w), (n, h, w, c) or (n, c, h, w) with"
      f" c in {{1, 3}}; got shape {images.shape}."
  )


def _load_npy_split(data_dir: str, split: str) -> Split:
  paths = [os.path.join(data_dir, f) for f in _NPY_FILES[split]]
  for path in paths:
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f"missing {path}. The npy source expects"
          f" {', '.join(f for pair in _NPY_FILES.values() for f in pair)} in"
          " data_dir (the reference code's layout)."
      )
  images_path, labels_path = paths
  images = np.load(images_path, allow_pickle=False)
  labels = np.load(labels_path, allow_pickle=False)
  if images.dtype != np.uint8:
    raise ValueError(
        f"{images_path}: images must be uint8 in [0, 255], got {images.dtype}."
    )
  if labels.ndim == 2 and labels.shape[1] == 1:  # Column vectors are common.
    labels = labels[:, 0]
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(
        f"{labels_path}: labels must be a 1-D integer array, got shape"
        f" {labels.shape} and dtype {labels.dtype}."
    )
  if images.shape[0] != labels.shape[0]:
    raise ValueError(
        f"{images_path} has {images.shape[0]} images but {labels_path} has"
        f" {labels.shape[0]} labels."
    )
  return Split(_to_nhwc(images, images_path), labels.astype(np.int32))


# ----------------------------------------------------------------------------
# tfds
# ----------------------------------------------------------------------------


def _resize(image: np.ndarray, size: int) -> np.ndarray:
  """Centre-crops ``image`` to a square and resizes it to ``size x size``.

  Keeping the aspect ratio (crop, then resize) avoids distorting the food.
  """
  # Imported on use: only variable-size datasets need Pillow.
  from PIL import Image  # pylint: disable=g-import-not-at-top

  height, width, channels = image.shape
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  pil = Image.fromarray(image[..., 0] if channels == 1 else image)
  pil = pil.crop((left, top, left + side, top + side))
  pil = pil.resize((size, size), Image.Resampling.BILINEAR)
  return np.asarray(pil).reshape(size, size, channels)


def _tfds_split(source: Any, label_field: str, image_size: int | None) -> Split:
  """Reads a whole tfds data source into memory, example by example."""
  num_examples = len(source)
  labels = np.empty(num_examples, np.int32)
  clean_labels = np.empty(num_examples, np.int32)
  images = None  # Allocated once the first image gives the shape.
  for i in range(num_examples):
    example = source[i]
    image = example["image"]
    if image_size is not None:
      image = _resize(image, image_size)
    if images is None:
      images = np.empty((num_examples,) + image.shape, np.uint8)
    images[i] = image
    labels[i] = example[label_field]
    clean_labels[i] = example["label"]
  if images is None:
    raise ValueError(f"tfds data source {source!r} is empty.")
  if label_field == "label":
    return Split(images, labels)
  return Split(images, labels, clean_labels)


def _load_tfds(
    name: str,
    data_dir: str | None,
    label_field: str | None,
    image_size: int | None,
) -> Dataset:
  """Loads a prepared tfds dataset through ``tfds.data_source``."""
  # Imported on use: the local-file sources must work without tfds.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  train_split, test_split = _TFDS_SPLITS.get(name, _DEFAULT_TFDS_SPLITS)
  try:
    train_source, test_source = tfds.data_source(
        name, split=[train_split, test_split], data_dir=data_dir, download=False
    )
  except NotImplementedError as err:
    # tfds reports a missing dataset as an unsupported (tfrecord) format.
    raise FileNotFoundError(
        f"tfds dataset {name!r} is not prepared as ArrayRecord in"
        f" {data_dir or '~/tensorflow_datasets'}. Prepare it with"
        f" `tfds build {name} --file_format=array_record"
        f"{' --data_dir=' + data_dir if data_dir else ''}`"
        " (needs internet and may need TensorFlow; cifar10_n/cifar100_n"
        " also need their manual downloads), or use source='idx'/'npy' with"
        " local files."
    ) from err
  features = train_source.dataset_info.features
  field = label_field or "label"
  label_fields = sorted(
      k for k, v in features.items() if isinstance(v, tfds.features.ClassLabel)
  )
  if field not in label_fields:
    raise ValueError(
        f"{name} has no label field {field!r}; its label fields are"
        f" {label_fields}."
    )
  if image_size is None and None in features["image"].shape:
    image_size = VARIABLE_SIZE_DEFAULT
  return Dataset(
      name=name,
      num_classes=features[field].num_classes,
      train=_tfds_split(train_source, field, image_size),
      # Real-noise datasets only have human labels for the training set.
      test=_tfds_split(test_source, "label", image_size),
  )


# ----------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------


def _has_files(data_dir: str | None, names: tuple[str, ...]) -> bool:
  return data_dir is not None and all(
      os.path.isfile(os.path.join(data_dir, n))
      or os.path.isfile(os.path.join(data_dir, n + ".gz"))
      for n in names
  )


def _resolve_source(
    name: str, source: str, data_dir: str | None
) -> tuple[str, str | None]:
  """Picks the source and directory that ``source="auto"`` stands for.

  ``auto`` prefers local files: the npy layout or IDX files in ``data_dir``,
  then the Debian Fashion-MNIST files, then tfds.
  """
  if source not in SOURCES:
    raise ValueError(f"unknown source {source!r}; valid sources: {SOURCES}.")
  if source != "auto":
    if source == "idx" and data_dir is None and name == "fashion_mnist":
      return source, DEBIAN_FASHION_MNIST_DIR
    return source, data_dir
  if _has_files(data_dir, _NPY_FILES["train"] + _NPY_FILES["test"]):
    return "npy", data_dir
  if _has_files(data_dir, _IDX_FILES["train"] + _IDX_FILES["test"]):
    return "idx", data_dir
  if (
      data_dir is None
      and name == "fashion_mnist"
      and os.path.isdir(DEBIAN_FASHION_MNIST_DIR)
  ):
    return "idx", DEBIAN_FASHION_MNIST_DIR
  return "tfds", data_dir


def _check_labels_in_range(split: Split, num_classes: int, what: str) -> None:
  if split.labels.size and (
      split.labels.min() < 0 or split.labels.max() >= num_classes
  ):
    raise ValueError(
        f"{what} labels lie in [{split.labels.min()}, {split.labels.max()}],"
        f" outside [0, {num_classes})."
    )


def load_dataset(
    name: str,
    *,
    source: str = "auto",
    data_dir: str | None = None,
    label_field: str | None = None,
    image_size: int | None = None,
) -> Dataset:
  """Loads a whole dataset into memory as uint8 NHWC images and int32 labels.

  Args:
    name: dataset name (see ``NUM_CLASSES``); case and ``-``/``_`` are free.
    source: ``"tfds"``, ``"idx"``, ``"npy"`` or ``"auto"`` (the npy layout or
      IDX files in ``data_dir`` if present; else, for Fashion-MNIST without a
      ``data_dir``, the Debian files in ``DEBIAN_FASHION_MNIST_DIR``; else
      tfds).
    data_dir: the tfds data directory for ``"tfds"``, the directory holding
      the files for ``"idx"``/``"npy"`` (``"idx"`` defaults to the Debian
      directory for Fashion-MNIST).
    label_field: tfds feature holding the training labels, for real-noise
      datasets: ``worse_label``, ``aggre_label``, ``random_label1..3``
      (cifar10_n) or ``noise_label`` (cifar100_n). The ground truth
      ``label`` is then kept in ``Split.clean_labels``. Test labels are
      always the ground truth.
    image_size: tfds only: centre-crop and resize every image to this square
      side. Defaults to the native size, or ``VARIABLE_SIZE_DEFAULT`` for
      datasets whose images vary in size (food101).

  Returns:
    The dataset.

  Raises:
    ValueError: for an unknown dataset, source or label field, or corrupt
      files.
    FileNotFoundError: when the data is missing, saying how to get it.
  """
  name = canonical_name(name)
  source, data_dir = _resolve_source(name, source, data_dir)
  if source != "tfds" and (label_field is not None or image_size is not None):
    raise ValueError(
        f"label_field and image_size apply to source='tfds', not {source!r}."
    )
  if source == "tfds":
    dataset = _load_tfds(name, data_dir, label_field, image_size)
  else:
    if data_dir is None:
      raise ValueError(
          f"source={source!r} needs data_dir, the files' directory."
      )
    load_split = _load_idx_split if source == "idx" else _load_npy_split
    dataset = Dataset(
        name=name,
        num_classes=NUM_CLASSES[name],
        train=load_split(data_dir, "train"),
        test=load_split(data_dir, "test"),
    )
  _check_labels_in_range(dataset.train, dataset.num_classes, f"{name} train")
  _check_labels_in_range(dataset.test, dataset.num_classes, f"{name} test")
  return dataset


# ----------------------------------------------------------------------------
# Noise and split
# ----------------------------------------------------------------------------

# Second entropy word that makes the split's random stream independent of
# the noise drawn from the same seed.
_SPLIT_STREAM = 1


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
    raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}.")
  permutation = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(
      num_examples
  )
  num_val = int(round(val_fraction * num_examples))
  return np.sort(permutation[num_val:]), np.sort(permutation[:num_val])


def make_noisy_dataset(
    dataset: Dataset,
    noise_type: str,
    noise_rate: float,
    seed: int,
    val_fraction: float = 0.1,
) -> NoisyDataset:
  """Applies label noise to the training set, then splits off validation.

  This is the paper's protocol: the noise is drawn on the whole training set
  so the validation set is as noisy as the training set, which is all that
  model selection may see. The test set stays clean.

  Args:
    dataset: the loaded dataset.
    noise_type: one of ``noise.NOISE_TYPES`` or ``"none"``.
    noise_rate: noise rate in ``[0, 1)`` (0 for ``"none"``).
    seed: seeds the noise and, through an independent stream, the split.
    val_fraction: fraction of the training set held out for validation.

  Returns:
    The noisy, split dataset. For real-noise datasets (labels loaded with a
    ``label_field``), synthetic noise applies on top of the human labels,
    the ground truth stays the reference for ``realized_rate``, and
    ``transition`` is ``None``.
  """
  train = dataset.train
  noisy = noise.add_noise(
      noise_type,
      labels=train.labels,
      rate=noise_rate,
      num_classes=dataset.num_classes,
      seed=seed,
      features=train.images,
      dataset=dataset.name,
  )
  clean = train.labels if train.clean_labels is None else train.clean_labels
  transition = noisy.transition if train.clean_labels is None else None
  train_idx, val_idx = split_indices(len(clean), val_fraction, seed)
  return NoisyDataset(
      name=dataset.name,
      num_classes=dataset.num_classes,
      train_images=train.images[train_idx],
      train_labels=noisy.labels[train_idx],
      train_clean_labels=clean[train_idx],
      val_images=train.images[val_idx],
      val_labels=noisy.labels[val_idx],
      val_clean_labels=clean[val_idx],
      test_images=dataset.test.images,
      test_labels=dataset.test.labels,
      noise_type=noise_type,
      noise_rate=noise_rate,
      realized_rate=float(np.mean(noisy.labels != clean)),
      transition=transition,
  )


# ----------------------------------------------------------------------------
# On-device preprocessing
# ----------------------------------------------------------------------------


def normalize(images: jax.Array, dataset_name: str) -> jax.Array:
  """Scales uint8 images to ``[0, 1]`` and standardizes them per channel.

  Uses the dataset's training-set statistics (per channel for CIFAR; 0.5/0.5
  for datasets without known statistics). Jittable, with ``dataset_name``
  static.

  Args:
    images: ``(..., c)`` uint8 (or float in ``[0, 255]``) images.
    dataset_name: dataset name, selecting the statistics.

  Returns:
    float32 images of the same shape.

  Raises:
    ValueError: when the statistics have a different channel count.
  """
  mean, std = NORMALIZATION.get(canonical_name(dataset_name), _DEFAULT_STATS)
  if len(mean) > 1 and images.shape[-1] != len(mean):
    raise ValueError(
        f"{dataset_name} statistics have {len(mean)} channels, images have"
        f" shape {images.shape}."
    )
  x = jnp.asarray(images, jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def random_crop_flip(
    rng: jax.Array, images: jax.Array, pad: int = 4
) -> jax.Array:
  """Per-example random crop after zero padding, and random horizontal flip.

  The CIFAR augmentation of the paper (torchvision ``RandomCrop(32,
  padding=4)`` + ``RandomHorizontalFlip``), in JAX so it runs inside the
  jitted training step. Apply it before :func:`normalize`: the padding is
  then black, as in torchvision.

  Args:
    rng: PRNG key.
    images: ``(b, h, w, c)`` batch, any dtype.
    pad: zero padding on each side; crop offsets range over ``[0, 2 * pad]``.

  Returns:
    Augmented batch with the shape and dtype of ``images``.
  """
  if pad < 0:
    raise ValueError(f"pad must be non-negative, got {pad}.")
  batch, height, width, channels = images.shape
  crop_rng, flip_rng = jax.random.split(rng)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(crop_rng, (batch, 2), 0, 2 * pad + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(
        image, (offset[0], offset[1], 0), (height, width, channels)
    )

  cropped = jax.vmap(crop)(padded, offsets)
  flip = jax.random.bernoulli(flip_rng, 0.5, (batch, 1, 1, 1))
  return jnp.where(flip, cropped[:, :, ::-1, :], cropped)


def uses_augmentation(dataset_name: str) -> bool:
  """Whether the paper trains this dataset with crop + flip augmentation.

  Args:
    dataset_name: dataset name.

  Returns:
    True for the 32x32 colour datasets (CIFAR-10/100 and their real-noise
    versions).
  """
  return canonical_name(dataset_name) in _AUGMENTED
