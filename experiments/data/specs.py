"""What the experiments know about each dataset, in one table.

A :class:`DatasetSpec` holds everything that depends on the dataset's name:
its class count, the per-channel statistics used to standardize its pixels,
whether the paper trains it with crop + flip augmentation, the tfds split
names, and for the input pipeline's workers the image sizes, the training
augmentation policy and the release layout a folder dataset is read from
(``experiments/data/folders.py``). Setup resolves the spec once
(:func:`get_spec`) and hands it down, so the training step never looks a
dataset up by name.

Sources of the defaults:

* ImageNet statistics (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225): those
  of torchvision's pretrained weights, which the ResNet-50 and
  Inception-ResNet-v2 datasets fine-tune or follow (DivideMix's WebVision
  loader uses them; its Clothing1M loader uses Clothing1M's own,
  (0.6959, 0.6537, 0.6371) / (0.3113, 0.3192, 0.3214), which a model trained
  from scratch may prefer). ANIMAL-10N's authors publish no statistics, and
  its loaders in the literature borrow CIFAR-10's or Clothing1M's; we use
  ImageNet's, as for the other web photographs, Food-101 included.
* 224 training crop, resize 256 + centre crop 224 for evaluation: ResNet-50
  on ImageNet (He et al. 2016; torchvision's reference recipe). 299 / 342 /
  299 for Inception-ResNet-v2 (Szegedy et al. 2017; torchvision's Inception
  weights evaluate at resize 342, crop 299), the WebVision model of
  Co-teaching, DivideMix and the CDR paper (Table 4).
* ``random_resized_crop`` + flip for the ImageNet-style datasets (the
  ImageNet recipe); pad-4 crop + flip for CIFAR and for ANIMAL-10N's 64 x 64
  images (its loaders train with random crop and flip at full size).

``config.image_size`` overrides ``train_size`` / ``eval_size`` (with
``eval_resize`` scaled alike) for tests and quick looks.
"""

from typing import NamedTuple

from experiments import errors


class DatasetSpec(NamedTuple):
  """Static facts about one dataset.

  Attributes:
    name: canonical name, a key of ``SPECS``.
    num_classes: number of classes.
    mean: per-channel mean of the training pixels in ``[0, 1]``.
    std: per-channel standard deviation of the training pixels in ``[0, 1]``.
    augment: whether training uses random crop (pad 4) + horizontal flip
      (the device path's augmentation; ``policy == "crop_flip"``).
    tfds_splits: tfds names of the training and the test split.
    train_size: side of the square training input (the defaults are
      MNIST's 28 x 28, unchanged).
    eval_resize: evaluation resizes the shorter side to this...
    eval_size: ...then takes the central ``eval_size`` square.
    policy: training augmentation in the input workers: ``"none"`` (the
      evaluation preprocessing), ``"crop_flip"`` (pad 4, random crop,
      horizontal flip) or ``"random_resized_crop"`` (+ horizontal flip).
    layout: the reader of the dataset's release folders (a key of
      ``folders.LAYOUTS``), or None for in-memory / tfds datasets.
  """

  name: str
  num_classes: int
  mean: tuple[float, ...] = (0.5,)
  std: tuple[float, ...] = (0.5,)
  augment: bool = False
  tfds_splits: tuple[str, str] = ("train", "test")
  train_size: int = 28
  eval_resize: int = 28
  eval_size: int = 28
  policy: str = "none"
  layout: str | None = None


POLICIES = ("none", "crop_flip", "random_resized_crop")


_CIFAR_SIZES = dict(
    augment=True, train_size=32, eval_resize=32, eval_size=32,
    policy="crop_flip",
)
_CIFAR10 = dict(
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
    **_CIFAR_SIZES,
)
_CIFAR100 = dict(
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
    **_CIFAR_SIZES,
)
_IMAGENET_STATS = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
_RESNET50 = dict(train_size=224, eval_resize=256, eval_size=224)
_INCEPTION_RESNET_V2 = dict(train_size=299, eval_resize=342, eval_size=299)
_RRC = "random_resized_crop"

SPECS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec("mnist", 10, (0.1307,), (0.3081,)),
        DatasetSpec("fashion_mnist", 10, (0.2860,), (0.3530,)),
        DatasetSpec("cifar10", 10, **_CIFAR10),
        DatasetSpec("cifar10_n", 10, **_CIFAR10),
        DatasetSpec("cifar100", 100, **_CIFAR100),
        DatasetSpec("cifar100_n", 100, **_CIFAR100),
        # Food-101 has no "test" split in tfds; its "validation" is the test.
        # Variable-size photos: only the grain path reads it, with the
        # ImageNet-style augmentation and statistics of the other photos.
        DatasetSpec(
            "food101", 101, tfds_splits=("train", "validation"),
            **_IMAGENET_STATS, **_RESNET50, policy=_RRC,
        ),
        DatasetSpec(
            "clothing1m", 14, **_IMAGENET_STATS, **_RESNET50, policy=_RRC,
            layout="clothing1m",
        ),
        DatasetSpec(
            "webvision", 1000, **_IMAGENET_STATS, **_INCEPTION_RESNET_V2,
            policy=_RRC, layout="webvision",
        ),
        DatasetSpec(
            "webvision_mini", 50, **_IMAGENET_STATS, **_INCEPTION_RESNET_V2,
            policy=_RRC, layout="webvision_mini",
        ),
        DatasetSpec(
            "food101n", 101, **_IMAGENET_STATS, **_RESNET50, policy=_RRC,
            layout="food101n",
        ),
        DatasetSpec(
            "animal10n", 10, **_IMAGENET_STATS, augment=True, train_size=64,
            eval_resize=64, eval_size=64, policy="crop_flip",
            layout="animal10n",
        ),
    )
}
NUM_CLASSES = {name: spec.num_classes for name, spec in SPECS.items()}
_ALIASES = {
    "fmnist": "fashion_mnist", "f_mnist": "fashion_mnist",
    "food_101n": "food101n", "animal_10n": "animal10n",
    "mini_webvision": "webvision_mini",
}


def canonical_name(name: str) -> str:
  """Maps a dataset name to its canonical form, e.g. ``"Fashion-MNIST"``.

  Args:
    name: dataset name, any case, ``-`` or ``_``.

  Returns:
    A key of ``SPECS``.

  Raises:
    ValueError: for an unknown dataset, listing the known ones.
  """
  key = name.lower().replace("-", "_")
  key = _ALIASES.get(key, key)
  if key not in SPECS:
    raise errors.UserError(
        f"unknown dataset {name!r}; known datasets: {sorted(SPECS)}."
    )
  return key


def get_spec(name: str) -> DatasetSpec:
  """The spec of dataset ``name`` (any spelling :func:`canonical_name` takes)."""
  return SPECS[canonical_name(name)]
