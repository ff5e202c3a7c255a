"""Prepared tensorflow-datasets datasets, read through ``tfds.data_source``.

``tfds.data_source`` gives random access to ArrayRecord files and works
without TensorFlow; the dataset must already be prepared in ``data_dir``.
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
    raise errors.UserError(f"tfds data source {source!r} is empty.")
  if label_field == "label":
    return Split(images, labels)
  return Split(images, labels, clean_labels)


def load(
    name: str,
    data_dir: str | None,
    label_field: str | None,
    image_size: int | None,
) -> Dataset:
  """Loads a prepared tfds dataset through ``tfds.data_source``."""
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
  field = label_field or "label"
  label_fields = sorted(
      k for k, v in features.items() if isinstance(v, tfds.features.ClassLabel)
  )
  if field not in label_fields:
    raise errors.UserError(
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
