"""Prepared tensorflow-datasets datasets, read through ``tfds.data_source``.

``tfds.data_source`` gives random access to ArrayRecord files and works
without TensorFlow; the dataset must already be prepared in ``data_dir``.
A split is either read into memory (the device path) or, with
``stream=True`` (the grain path), left on disk as a :class:`TfdsImages`
store that decodes one example when the input workers index it, so that
Food-101 (about 11 GB as 224 px uint8) never has to fit in host memory.

Label fields: the real-noise datasets ship human labels beside the ground
truth ``label`` (CIFAR-10N: ``aggre_label``, ``random_label1..3``,
``worse_label``; CIFAR-100N: ``noise_label``; Wei et al., ICLR 2022, as
tfds names them). With such a ``label_field`` the split's labels are the
human ones and ``label`` is kept as ``Split.clean_labels``.
"""

from typing import Any

import numpy as np

from experiments import errors
from experiments.data.dataset import Dataset
from experiments.data.dataset import Split
from experiments.data.specs import get_spec

# Side length used for datasets whose images vary in size when no
# `image_size` is given: 224 is the ResNet-50 input of the paper's Food-101
# run. The Food-101 train split then takes about 11 GB as uint8.
VARIABLE_SIZE_DEFAULT = 224


class TfdsImages:
  """A tfds split's images, decoded on access; stands in for an image array.

  It looks to the grain path like a 1-D array of ``n`` images (``ndim`` 1,
  ``shape`` ``(n,)``, as a folder dataset's paths): an integer index gives
  that example's uint8 ``(h, w, c)`` image as tfds decodes it (variable in
  size for Food-101; the grain preprocessing resizes it), an array or slice
  of indices gives a store of those examples, so that the protocol's subset
  and train/validation split stay on disk. Picklable (grain workers), as
  tfds data sources are.
  """

  ndim = 1

  def __init__(self, source: Any, indices: np.ndarray):
    self._source, self._indices = source, indices

  @property
  def shape(self) -> tuple[int]:
    return (len(self._indices),)

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, key):
    if isinstance(key, (int, np.integer)):
      return np.asarray(self._source[int(self._indices[key])]["image"],
                        np.uint8)
    return TfdsImages(self._source, self._indices[key])

  def __array__(self, dtype=None, copy=None):
    # Everything at once (instance noise reads every image's pixels).
    del copy
    images = [self[i] for i in range(len(self))]
    if len({image.shape for image in images}) > 1:
      raise errors.UserError(
          "this tfds split's images vary in size: it cannot be read as one"
          " array (instance noise needs every image at one size).")
    return np.stack(images).astype(dtype or np.uint8)


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


def _read(source: Any, fields: tuple[str, ...], image_size: int | None,
          keep_images: bool) -> tuple[np.ndarray | None, list[np.ndarray]]:
  """One pass over the split: its ``fields`` as int32 columns and, if
  ``keep_images``, every image in memory (resized if ``image_size``).

  tfds decodes every example it returns, so even the labels alone cost a
  decode of each image (once, at setup).
  """
  columns = [np.empty(len(source), np.int32) for _ in fields]
  images = None  # Allocated once the first image gives the shape.
  for i in range(len(source)):
    example = source[i]
    for column, field in zip(columns, fields):
      column[i] = example[field]
    if keep_images:
      image = example["image"]
      if image_size is not None:
        image = _resize(image, image_size)
      if images is None:
        images = np.empty((len(source),) + image.shape, np.uint8)
      images[i] = image
  return images, columns


def _tfds_split(source: Any, label_field: str, image_size: int | None,
                stream: bool) -> Split:
  """One split: its labels, and its images in memory or as a store."""
  if not len(source):
    raise errors.UserError(f"tfds data source {source!r} is empty.")
  images, (labels, clean_labels) = _read(
      source, (label_field, "label"), image_size, keep_images=not stream)
  if stream:
    images = TfdsImages(source, np.arange(len(source)))
  if label_field == "label":
    return Split(images, labels)
  return Split(images, labels, clean_labels)


def _label_field(name: str, features: Any, label_field: str | None) -> str:
  """The field training labels come from, checked against the features."""
  # Imported on use: the local-file sources must work without tfds.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  field = label_field or "label"
  # Only fields over the classes of `label` (CIFAR-100N's 20-class
  # `coarse_label` is another task).
  label_fields = sorted(
      k for k, v in features.items()
      if isinstance(v, tfds.features.ClassLabel)
      and v.num_classes == features["label"].num_classes
  )
  if field not in label_fields:
    raise errors.UserError(
        f"{name} has no label field {field!r}; its label fields are"
        f" {label_fields}."
    )
  return field


def load(
    name: str,
    data_dir: str | None,
    label_field: str | None,
    image_size: int | None,
    stream: bool = False,
) -> Dataset:
  """Loads a prepared tfds dataset through ``tfds.data_source``.

  Args:
    name: canonical dataset name.
    data_dir: the tfds data directory (None: tfds's default).
    label_field: the feature training labels come from (None: ``label``).
    image_size: in memory: centre-crop and resize every image to this side
      (default: native, or ``VARIABLE_SIZE_DEFAULT`` for variable sizes).
      Not applied with ``stream`` (the grain preprocessing resizes).
    stream: images as :class:`TfdsImages` stores instead of arrays.

  Returns:
    The dataset; only the labels are read in full.
  """
  # Imported on use: the local-file sources must work without tfds.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  train_split, test_split = get_spec(name).tfds_splits
  try:
    train_source, test_source = tfds.data_source(
        name, split=[train_split, test_split], data_dir=data_dir, download=False
    )
  except (NotImplementedError, KeyError) as err:
    # tfds reports a missing dataset as an unsupported (tfrecord) format, or
    # (since 4.9.x) as a KeyError on its empty split table.
    raise errors.MissingDataError(
        f"tfds dataset {name!r} is not prepared as ArrayRecord in"
        f" {data_dir or '~/tensorflow_datasets'}. Prepare it with"
        f" `tfds build {name} --file_format=array_record"
        f"{' --data_dir=' + data_dir if data_dir else ''}`"
        " (needs internet and may need TensorFlow; cifar10_n/cifar100_n"
        " also need their manual downloads), or use source='idx'/'npy' with"
        " local files."
    ) from err
  features = train_source.dataset_info.features
  field = _label_field(name, features, label_field)
  if image_size is None and None in features["image"].shape:
    image_size = VARIABLE_SIZE_DEFAULT
  return Dataset(
      name=name,
      num_classes=features[field].num_classes,
      train=_tfds_split(train_source, field, image_size, stream),
      # Real-noise datasets only have human labels for the training set.
      test=_tfds_split(test_source, "label", image_size, stream),
  )
