"""Food-101N, tested on the Food-101 test split.

Lee et al., "CleanNet: transfer learning for scalable image classifier
training with label noise", CVPR 2018. Layout under ``data_dir`` (the
``Food-101N_release`` folder):

* ``meta/classes.txt``: a ``class_name`` header, then the 101 Food-101 class
  names in label order;
* ``meta/imagelist.tsv``: a ``class_name/key`` header, then one
  ``apple_pie/<id>.jpg`` line per training image (310,009); the folder is
  the noisy label;
* ``meta/verified_train.tsv``, ``meta/verified_val.tsv``: a
  ``class_name/key<TAB>verification_label`` header, then ``<key><TAB>1`` if
  a person confirmed the label, ``<key><TAB>0`` if not. A few keys name a
  different class than ``imagelist.tsv`` does; they verify nothing here;
* ``images/<class>/<id>.jpg``.

The literature trains on all 310k noisy labels and tests on the 25,250
Food-101 test images (Bossard et al. 2014), so the Food-101 release folder
(``food-101/``: ``meta/test.txt`` with ``apple_pie/1011328`` lines and
``images/apple_pie/1011328.jpg``) is needed too. It is found at
``food101_dir`` when given, else as ``food-101`` inside ``data_dir`` or
beside it (the two archives unpacked side by side). The verification
labels only feed ``clean_labels``/``verified`` (reporting); the epoch is
selected on a noisy split of the training images.
"""

import os

from experiments import errors
from experiments.data import image_list as il

NUM_CLASSES = 101  # Food-101's classes.


def _classes(meta: str) -> tuple[str, ...]:
  path = os.path.join(meta, "classes.txt")
  names = tuple(text for _, text in il.read_lines(path, header="class_name"))
  if len(set(names)) != NUM_CLASSES:
    raise errors.UserError(
        f"{path}: expected {NUM_CLASSES} distinct class names, found"
        f" {len(set(names))} in {len(names)} lines."
    )
  return names


def _class_of(path: str, line: int, key: str, index: dict[str, int]) -> int:
  class_name, slash, name = key.partition("/")
  if not slash or not name or "/" in name:
    raise il.line_error(
        path, line, f"expected '<class name>/<image>', got {key!r}."
    )
  if class_name not in index:
    raise il.line_error(
        path, line, f"class {class_name!r} is not in meta/classes.txt."
    )
  return index[class_name]


def _verified(meta: str) -> dict[str, int]:
  """verification_label of each key of the two verified lists."""
  verified = {}
  for name in ("verified_train.tsv", "verified_val.tsv"):
    path = os.path.join(meta, name)
    header = "class_name/key\tverification_label"
    for line, text in il.read_lines(path, header=header):
      fields = text.split("\t")
      if len(fields) != 2 or fields[1] not in ("0", "1"):
        raise il.line_error(
            path, line,
            f"expected '<class name>/<image><TAB>0 or 1', got {text!r}.",
        )
      verified[fields[0]] = int(fields[1])
  return verified


def _food101_test(
    data_dir: str, food101_dir: str | None, index: dict[str, int]
) -> il.ImageList:
  if food101_dir is None:
    meta_test = il.first_existing(
        [os.path.join(d, "food-101", "meta", "test.txt")
         for d in (data_dir, os.path.dirname(data_dir))],
        "the Food-101 test split (food-101/meta/test.txt; or set"
        " food101_dir)",
    )
    food101_dir = os.path.dirname(os.path.dirname(meta_test))
  food101_dir = os.path.abspath(food101_dir)
  path = os.path.join(food101_dir, "meta", "test.txt")
  paths, labels, lines = [], [], []
  for line, key in il.read_lines(path):
    labels.append(_class_of(path, line, key, index))
    paths.append(os.path.join(food101_dir, "images", key + ".jpg"))
    lines.append(line)
  il.check_images_exist(paths, lines, path)
  return il.clean_list(paths, labels)


def read(data_dir: str, *, food101_dir: str | None = None) -> il.FolderDataset:
  """Reads Food-101N from ``data_dir`` (see the module doc).

  Args:
    data_dir: the ``Food-101N_release`` folder.
    food101_dir: the Food-101 release folder, for the test split; found
      inside or beside ``data_dir`` when None.
  """
  data_dir = os.path.abspath(data_dir)
  meta = il.require_dir(os.path.join(data_dir, "meta"), "Food-101N's meta/")
  class_names = _classes(meta)
  index = {name: i for i, name in enumerate(class_names)}
  verified = _verified(meta)

  list_file = os.path.join(meta, "imagelist.tsv")
  paths, labels, lines, checked = [], [], [], []
  for line, key in il.read_lines(list_file, header="class_name/key"):
    labels.append(_class_of(list_file, line, key, index))
    paths.append(os.path.join(data_dir, "images", key))
    lines.append(line)
    checked.append(verified.get(key, -1))
  il.check_images_exist(paths, lines, list_file)
  clean_labels = [l if ok == 1 else -1 for l, ok in zip(labels, checked)]
  train = il.make_list(paths, labels, clean_labels, checked)
  il.check_classes_present(train.labels, class_names, list_file)
  return il.FolderDataset(
      name="food101n",
      class_names=class_names,
      train=train,
      val=None,
      test=_food101_test(data_dir, food101_dir, index),
      extra_tests={},
      val_kind="noisy_split",
  )
