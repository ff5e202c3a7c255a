"""Clothing1M, as its authors release it.

Xiao et al., "Learning from massive noisy labeled data for image
classification", CVPR 2015.

Layout under ``data_dir``: ``images/0/00/<id>.jpg`` ... (the ten
``images/<k>.tar`` unpacked) and the annotation files, at the root or under
``annotations/``:

* ``noisy_label_kv.txt`` and ``clean_label_kv.txt``: ``images/0/00/x.jpg 3``
  lines, an image's key and its noisy (web) or clean (human) label;
* ``noisy_train_key_list.txt``, ``clean_val_key_list.txt``,
  ``clean_test_key_list.txt``: one key per line (``clean_train_key_list.txt``
  is not used: the protocol trains on the noisy labels);
* ``category_names_eng.txt``: the 14 class names, one per line.

The protocol of the literature (e.g. DivideMix's ``dataloader_clothing1M.py``,
Li et al. 2020): train on the 1M noisy keys with their noisy labels, select
on the clean validation keys (14,313), test on the clean test keys
(10,526), both with their clean labels. Training images that also have a
clean label carry it in ``clean_labels``, for reporting only.
"""

import os

from experiments import errors
from experiments.data import image_list as il

# The category names of the paper (Xiao et al. 2015, Fig. 1), in label order.
CLASS_NAMES = (
    "T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie",
    "Windbreaker", "Jacket", "Down Coat", "Suit", "Shawl", "Dress", "Vest",
    "Underwear",
)


def _annotation_dir(data_dir: str) -> str:
  candidates = [os.path.join(data_dir, "annotations"), data_dir]
  found = il.first_existing(
      [os.path.join(d, "noisy_label_kv.txt") for d in candidates],
      "Clothing1M annotations (noisy_label_kv.txt)",
  )
  return os.path.dirname(found)


def _class_names(annotations: str) -> tuple[str, ...]:
  path = os.path.join(annotations, "category_names_eng.txt")
  if not os.path.exists(path):
    return CLASS_NAMES
  names = tuple(text for _, text in il.read_lines(path))
  if len(names) != len(CLASS_NAMES):
    raise errors.UserError(
        f"{path}: expected {len(CLASS_NAMES)} class names, found {len(names)}."
    )
  return names


def _label_map(path: str) -> dict[str, int]:
  labels = {}
  for line, text in il.read_lines(path):
    key, label = il.path_and_label(path, line, text, len(CLASS_NAMES))
    labels[key] = label
  return labels


def _keys(
    data_dir: str, path: str, labels: dict[str, int], labels_file: str
) -> tuple[list[str], list[str], list[int]]:
  """A key list's keys, their images' absolute paths and their labels."""
  keys, lines = [], []
  for line, text in il.read_lines(path):
    if len(text.split()) != 1:
      raise il.line_error(path, line, f"expected one image key, got {text!r}.")
    if text not in labels:
      raise il.line_error(path, line, f"key {text} is not in {labels_file}.")
    keys.append(text)
    lines.append(line)
  paths = [os.path.join(data_dir, key) for key in keys]
  il.check_images_exist(paths, lines, path)
  return keys, paths, [labels[key] for key in keys]


def read(data_dir: str) -> il.FolderDataset:
  """Reads the Clothing1M release in ``data_dir`` (see the module doc)."""
  data_dir = os.path.abspath(data_dir)
  il.require_dir(
      os.path.join(data_dir, "images"),
      "Clothing1M's images/0.tar ... images/9.tar unpacked",
  )
  annotations = _annotation_dir(data_dir)
  class_names = _class_names(annotations)
  noisy_file = os.path.join(annotations, "noisy_label_kv.txt")
  clean_file = os.path.join(annotations, "clean_label_kv.txt")
  noisy, clean = _label_map(noisy_file), _label_map(clean_file)

  train_file = os.path.join(annotations, "noisy_train_key_list.txt")
  keys, paths, labels = _keys(data_dir, train_file, noisy, noisy_file)
  clean_labels = [clean.get(k, -1) for k in keys]
  verified = [
      -1 if c < 0 else int(c == n) for c, n in zip(clean_labels, labels)
  ]
  train = il.make_list(paths, labels, clean_labels, verified)
  il.check_classes_present(train.labels, class_names, train_file)

  def clean_split(name):
    path = os.path.join(annotations, name)
    _, split_paths, split_labels = _keys(data_dir, path, clean, clean_file)
    return il.clean_list(split_paths, split_labels)

  return il.FolderDataset(
      name="clothing1m",
      class_names=class_names,
      train=train,
      val=clean_split("clean_val_key_list.txt"),
      test=clean_split("clean_test_key_list.txt"),
      extra_tests={},
      val_kind="clean_val",
  )
