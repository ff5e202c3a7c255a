"""WebVision 1.0 and its mini subset, with the ILSVRC12 validation set.

Li et al., "WebVision database: visual learning and understanding from web
data", 2017. Layout under ``data_dir``: the resized release's archives
(``google_resized_256.tar``, ``flickr_resized_256.tar``,
``val_images_256.tar``, ``info.tar``) unpacked side by side, or the
full-size release's, which has the same lists:

* ``info/train_filelist_google.txt``, ``info/train_filelist_flickr.txt``:
  ``google/q0001/000000.jpg 0`` lines, the image's path under ``data_dir``
  and its (noisy, query-derived) label in ``[0, 1000)``;
* ``info/val_filelist.txt``: ``val000001.jpg 0`` lines, the human-labelled
  validation images, under ``val_images_256/`` (resized release) or
  ``val_images/`` (full-size release);
* ``info/synsets.txt`` (optional): ``n01440764 tench, Tinca tinca`` lines,
  the ILSVRC12 synsets in label order, for class names and for the
  ImageNet folders below.

``webvision`` trains on Google + Flickr, all 1000 classes; ``webvision_mini``
on the first 50 classes of the Google images (the protocol of Co-teaching,
Jiang et al. 2018, and DivideMix, Li et al. 2020, ``dataloader_webvision.py``:
keep the lines whose label is < 50). Both test on the WebVision validation
images of their classes and select on a noisy split of the training set
(WebVision's test labels are not public, so the literature reports its
validation set as the test).

With ``imagenet_val_dir``, the ILSVRC12 validation images of the same classes
become ``extra_tests["imagenet_val"]`` (the paper's WebVision-mini number).
That folder holds either

* the 50,000 ``ILSVRC2012_val_*.JPEG`` files and Caffe's ``val.txt``
  (``ILSVRC2012_val_00000001.JPEG 65`` lines; its labels follow the sorted
  synsets, WebVision's order), or
* one subfolder per class named by its synset (``n01440764/``), as
  torchvision's ``ImageFolder`` reads it; ``info/synsets.txt`` maps them.
"""

import os

from experiments import errors
from experiments.data import image_list as il

NUM_WEBVISION_CLASSES = 1000
_VAL_FOLDERS = ("val_images_256", "val_images")


def _file_list(
    path: str, root: str, num_classes: int
) -> tuple[list[str], list[int]]:
  """Images under ``root`` of a ``<path> <label>`` list, first classes only."""
  paths, labels, lines = [], [], []
  for line, text in il.read_lines(path):
    name, label = il.path_and_label(path, line, text, NUM_WEBVISION_CLASSES)
    if label < num_classes:
      paths.append(os.path.join(root, name))
      labels.append(label)
      lines.append(line)
  il.check_images_exist(paths, lines, path)
  return paths, labels


def _synsets(info: str) -> list[tuple[str, str]] | None:
  """(synset id, words) per WebVision label, or None without synsets.txt."""
  path = os.path.join(info, "synsets.txt")
  if not os.path.exists(path):
    return None
  synsets = []
  for _, text in il.read_lines(path):
    synset, _, words = text.partition(" ")
    synsets.append((synset, words.strip()))
  if len(synsets) != NUM_WEBVISION_CLASSES:
    raise errors.UserError(
        f"{path}: expected {NUM_WEBVISION_CLASSES} synsets, found"
        f" {len(synsets)}."
    )
  return synsets


def _imagenet_val(
    folder: str, synsets: list[tuple[str, str]] | None, num_classes: int,
    info: str,
) -> il.ImageList:
  """The ILSVRC12 validation images of the first ``num_classes`` classes."""
  il.require_dir(folder, "imagenet_val_dir, the ILSVRC12 validation images")
  label_file = os.path.join(folder, "val.txt")
  if os.path.exists(label_file):
    paths, labels = _file_list(label_file, folder, num_classes)
    source = label_file
  else:
    if synsets is None:
      raise errors.MissingDataError(
          f"{folder} has no val.txt, and {info}/synsets.txt, which maps its"
          " class folders to WebVision's labels, does not exist."
      )
    paths, labels = [], []
    for label, (synset, _) in enumerate(synsets[:num_classes]):
      class_dir = os.path.join(folder, synset)
      if not os.path.isdir(class_dir):
        raise errors.MissingDataError(
            f"{class_dir}: no such folder (class {label}); {folder} needs"
            " val.txt or one folder per synset."
        )
      names = sorted(n for n in os.listdir(class_dir) if il.is_image_file(n))
      paths += [os.path.join(class_dir, name) for name in names]
      labels += [label] * len(names)
    source = folder
  image_list = il.clean_list(paths, labels)
  il.check_classes_present(
      image_list.labels, tuple(map(str, range(num_classes))), source
  )
  return image_list


def read(
    data_dir: str,
    *,
    sources: tuple[str, ...],
    num_classes: int,
    name: str,
    imagenet_val_dir: str | None = None,
) -> il.FolderDataset:
  """Reads WebVision 1.0 from ``data_dir`` (see the module doc).

  Args:
    data_dir: the release's root folder.
    sources: ``("google", "flickr")`` or ``("google",)``.
    num_classes: keep the images of labels ``< num_classes``.
    name: the dataset's name.
    imagenet_val_dir: optional ILSVRC12 validation folder.
  """
  data_dir = os.path.abspath(data_dir)
  info = il.require_dir(os.path.join(data_dir, "info"), "WebVision's info/")
  synsets = _synsets(info)
  if synsets is None:
    class_names = tuple(f"class_{c}" for c in range(num_classes))
  else:
    class_names = tuple(words or synset for synset, words in synsets)
    class_names = class_names[:num_classes]

  paths, labels = [], []
  for source in sources:
    list_file = os.path.join(info, f"train_filelist_{source}.txt")
    source_paths, source_labels = _file_list(list_file, data_dir, num_classes)
    paths += source_paths
    labels += source_labels
  train = il.make_list(paths, labels)
  il.check_classes_present(
      train.labels, class_names,
      " + ".join(f"train_filelist_{s}.txt" for s in sources),
  )

  val_root = il.first_existing(
      [os.path.join(data_dir, f) for f in _VAL_FOLDERS],
      "WebVision validation images",
  )
  test = il.clean_list(
      *_file_list(os.path.join(info, "val_filelist.txt"), val_root, num_classes)
  )
  extra_tests = {}
  if imagenet_val_dir is not None:
    extra_tests["imagenet_val"] = _imagenet_val(
        os.path.abspath(imagenet_val_dir), synsets, num_classes, info
    )
  return il.FolderDataset(
      name=name,
      class_names=class_names,
      train=train,
      val=None,
      test=test,
      extra_tests=extra_tests,
      val_kind="noisy_split",
  )
