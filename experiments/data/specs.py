"""What the experiments know about each dataset, in one table.

A :class:`DatasetSpec` holds everything that depends on the dataset's name:
its class count, the per-channel statistics used to standardize its pixels,
whether the paper trains it with crop + flip augmentation, and the tfds split
names. Setup resolves the spec once (:func:`get_spec`) and hands it down, so
the training step never looks a dataset up by name.
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
    augment: whether training uses random crop (pad 4) + horizontal flip.
    tfds_splits: tfds names of the training and the test split.
  """

  name: str
  num_classes: int
  mean: tuple[float, ...] = (0.5,)
  std: tuple[float, ...] = (0.5,)
  augment: bool = False
  tfds_splits: tuple[str, str] = ("train", "test")


_CIFAR10 = dict(
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), augment=True
)
_CIFAR100 = dict(
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), augment=True
)

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
        DatasetSpec("food101", 101, tfds_splits=("train", "validation")),
    )
}
NUM_CLASSES = {name: spec.num_classes for name, spec in SPECS.items()}
_ALIASES = {"fmnist": "fashion_mnist", "f_mnist": "fashion_mnist"}


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
