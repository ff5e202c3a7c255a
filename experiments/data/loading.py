"""Loads a clean dataset from one of its sources.

The labels live in memory as numpy arrays, and so do the images (the
largest in-memory set, CIFAR, is 150 MB of uint8) except on the grain path,
where tfds images stay on disk (``stream``; Food-101 would take 11 GB).
That keeps the pipeline exact, seedable and free of TensorFlow. Three
sources give the same ``Dataset``:

* ``"tfds"``: ``tfds.data_source`` (``experiments.data.tfds_source``); the
  dataset must already be prepared in ``data_dir``.
* ``"idx"``: a directory of MNIST-format IDX files, gzipped or not
  (``experiments.data.idx``), e.g. the Debian package
  ``dataset-fashion-mnist``.
* ``"npy"``: a directory in the layout of the reference code
  (``experiments.data.npy``).
"""

import os

from experiments import errors
from experiments.data import idx
from experiments.data import npy
from experiments.data import specs
from experiments.data import tfds_source
from experiments.data.dataset import Dataset
from experiments.data.dataset import Split

SOURCES = ("auto", "tfds", "idx", "npy")


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
    raise errors.UserError(f"unknown source {source!r}; valid sources: {SOURCES}.")
  if data_dir is not None and not os.path.isdir(data_dir):
    raise errors.MissingDataError(f"data_dir {data_dir} is not a directory.")
  if source != "auto":
    if source == "idx" and data_dir is None and name == "fashion_mnist":
      return source, idx.DEBIAN_FASHION_MNIST_DIR
    return source, data_dir
  if _has_files(data_dir, npy.NPY_FILES["train"] + npy.NPY_FILES["test"]):
    return "npy", data_dir
  if _has_files(data_dir, idx.IDX_FILES["train"] + idx.IDX_FILES["test"]):
    return "idx", data_dir
  if (
      data_dir is None
      and name == "fashion_mnist"
      and os.path.isdir(idx.DEBIAN_FASHION_MNIST_DIR)
  ):
    return "idx", idx.DEBIAN_FASHION_MNIST_DIR
  return "tfds", data_dir


def _check_labels_in_range(split: Split, num_classes: int, what: str) -> None:
  if split.labels.size and (
      split.labels.min() < 0 or split.labels.max() >= num_classes
  ):
    raise errors.UserError(
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
    stream: bool = False,
) -> Dataset:
  """Loads a whole dataset into memory as uint8 NHWC images and int32 labels.

  Args:
    name: dataset name (see ``specs.SPECS``); case and ``-``/``_`` are free.
    source: ``"tfds"``, ``"idx"``, ``"npy"`` or ``"auto"`` (the npy layout or
      IDX files in ``data_dir`` if present; else, for Fashion-MNIST without a
      ``data_dir``, the Debian files in ``idx.DEBIAN_FASHION_MNIST_DIR``; else
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
      datasets whose images vary in size (food101); with ``stream`` the
      grain preprocessing resizes instead.
    stream: tfds only: leave the images on disk, as
      ``tfds_source.TfdsImages`` stores the grain path reads example by
      example (other sources are read into memory).

  Returns:
    The dataset.

  Raises:
    ValueError: for an unknown dataset, source or label field, or corrupt
      files.
    FileNotFoundError: when the data is missing, saying how to get it.
  """
  name = specs.canonical_name(name)
  source, data_dir = _resolve_source(name, source, data_dir)
  if source != "tfds" and (label_field is not None or image_size is not None):
    raise errors.UserError(
        f"label_field and image_size apply to source='tfds', not {source!r}."
    )
  if source == "tfds":
    dataset = tfds_source.load(name, data_dir, label_field, image_size,
                               stream)
  else:
    if data_dir is None:
      raise errors.UserError(
          f"source={source!r} needs data_dir, the files' directory."
      )
    load_split = idx.load_split if source == "idx" else npy.load_split
    dataset = Dataset(
        name=name,
        num_classes=specs.NUM_CLASSES[name],
        train=load_split(data_dir, "train"),
        test=load_split(data_dir, "test"),
    )
  _check_labels_in_range(dataset.train, dataset.num_classes, f"{name} train")
  _check_labels_in_range(dataset.test, dataset.num_classes, f"{name} test")
  return dataset


def load_configured(config) -> Dataset | None:
  """The clean dataset a run's config names, or None for a folder dataset
  (read at setup by ``real_noise.make_folder_dataset``).

  On the grain path (``config.input_pipeline == "grain"``) tfds splits stay
  on disk (``stream``); otherwise they are read into memory.
  """
  name = specs.canonical_name(config.dataset)
  if specs.get_spec(name).layout is not None:
    if config.label_field is not None:
      raise errors.UserError(
          f"label_field applies to tfds datasets; {name} reads its labels"
          " from its release's list files.")
    return None
  return load_dataset(
      name, source=config.data_source, data_dir=config.data_dir,
      label_field=config.label_field,
      image_size=None if config.input_pipeline == "grain" else config.image_size,
      stream=config.input_pipeline == "grain",
  )


def config_key(config) -> tuple:
  """What `load_configured` depends on: runs with equal keys share a load."""
  return (specs.canonical_name(config.dataset), config.data_source,
          config.data_dir, config.label_field, config.input_pipeline,
          config.image_size)
