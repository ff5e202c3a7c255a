"""ANIMAL-10N, as its authors release it.

Song et al., "SELFIE: refurbishing unclean samples for robust deep
learning", ICML 2019; https://dm.kaist.ac.kr/datasets/animal-10n. Layout
under ``data_dir``: ``training/`` (50,000 images, human labels with about 8%
noise) and ``testing/`` (5,000 images whose label matches the search
keyword), 64 x 64 JPEGs named ``<label>_<id>.jpg``: the label is the number
before the first ``_`` (as DivideMix-style loaders read it). No verified
labels exist for the training images; the epoch is selected on a noisy split
of them.
"""

import os

from experiments import errors
from experiments.data import image_list as il

# The dataset page's label table, in label order.
CLASS_NAMES = (
    "cat", "lynx", "wolf", "coyote", "cheetah", "jaguar", "chimpanzee",
    "orangutan", "hamster", "guinea pig",
)


def _folder(folder: str) -> tuple[list[str], list[int]]:
  il.require_dir(folder, "ANIMAL-10N's training/ and testing/ folders")
  paths, labels = [], []
  for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    if not il.is_image_file(name):
      continue
    prefix, underscore, _ = name.partition("_")
    if not underscore or not prefix.isdigit():
      raise errors.UserError(
          f"{path}: the file name does not start with '<label>_'."
      )
    if int(prefix) >= len(CLASS_NAMES):
      raise errors.UserError(
          f"{path}: label {int(prefix)} is outside [0, {len(CLASS_NAMES)})."
      )
    paths.append(path)
    labels.append(int(prefix))
  return paths, labels


def read(data_dir: str) -> il.FolderDataset:
  """Reads ANIMAL-10N from ``data_dir`` (see the module doc)."""
  data_dir = os.path.abspath(data_dir)
  train_dir = os.path.join(data_dir, "training")
  train = il.make_list(*_folder(train_dir))
  il.check_classes_present(train.labels, CLASS_NAMES, train_dir)
  test_dir = os.path.join(data_dir, "testing")
  test = il.clean_list(*_folder(test_dir))
  il.check_classes_present(test.labels, CLASS_NAMES, test_dir)
  return il.FolderDataset(
      name="animal10n",
      class_names=CLASS_NAMES,
      train=train,
      val=None,
      test=test,
      extra_tests={},
      val_kind="noisy_split",
  )
