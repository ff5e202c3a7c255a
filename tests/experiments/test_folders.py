"""Tests for the release-folder readers (experiments/data/folders.py).

Each test writes a tiny dataset in the release's exact layout (its file
names, headers and line formats) under tmp_path. The readers never open an
image, so every image is a copy of one small JPEG's bytes.
"""

import io
import os

import numpy as np
from PIL import Image
import pytest

from experiments import errors
from experiments.data import folders
from experiments.data import specs
from experiments.data.releases import animal10n
from experiments.data.releases import clothing1m


def _jpeg_bytes() -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(buffer, "JPEG")
  return buffer.getvalue()


_JPEG = _jpeg_bytes()


def _image(path) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(_JPEG)


def _write(path, lines) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(line + "\n" for line in lines))
  return str(path)


def _one_line_error(excinfo, *fragments):
  message = str(excinfo.value)
  assert "\n" not in message
  assert isinstance(excinfo.value, errors.UserError)
  for fragment in fragments:
    assert fragment in message, (fragment, message)


# ---------------------------------------------------------------------------
# Clothing1M
# ---------------------------------------------------------------------------


def _clothing1m(root, annotations="annotations"):
  """14 classes x 3 noisy training images; clean labels for some of them."""
  notes = os.path.join(root, annotations)
  train, noisy, clean = [], [], []
  for i in range(42):
    key = f"images/{i % 10}/{i % 7:02d}/{1000 + i}.jpg"
    _image(os.path.join(root, key))
    train.append(key)
    noisy.append(f"{key} {i % 14}")
    if i % 3 == 0:  # A clean label: right for even i, wrong for odd.
      clean.append(f"{key} {i % 14 if i % 2 == 0 else (i + 1) % 14}")
  # noisy_label_kv.txt holds more keys than the training list.
  noisy.append("images/9/99/extra.jpg 2")
  val, test = [], []
  for i in range(28):
    key = f"images/{i % 10}/50/{5000 + i}.jpg"
    _image(os.path.join(root, key))
    clean.append(f"{key} {i % 14}")
    (val if i < 14 else test).append(key)
  _write(os.path.join(notes, "noisy_label_kv.txt"), noisy)
  _write(os.path.join(notes, "clean_label_kv.txt"), clean)
  _write(os.path.join(notes, "noisy_train_key_list.txt"), train)
  _write(os.path.join(notes, "clean_train_key_list.txt"), [])
  _write(os.path.join(notes, "clean_val_key_list.txt"), val)
  _write(os.path.join(notes, "clean_test_key_list.txt"), test)
  _write(
      os.path.join(notes, "category_names_eng.txt"), clothing1m.CLASS_NAMES
  )
  return notes


@pytest.mark.parametrize("annotations", ["annotations", ""])
def test_clothing1m(tmp_path, annotations):
  _clothing1m(tmp_path, annotations)
  data = folders.read_folder_dataset("Clothing1M", str(tmp_path))
  assert data.name == "clothing1m" and data.num_classes == 14
  assert data.class_names == clothing1m.CLASS_NAMES
  assert data.val_kind == "clean_val" and data.extra_tests == {}
  train = data.train
  assert len(train.paths) == 42 and train.labels.dtype == np.int32
  np.testing.assert_array_equal(train.labels, np.arange(42) % 14)
  assert train.paths[5] == os.path.join(str(tmp_path), "images/5/05/1005.jpg")
  assert all(os.path.isabs(p) and os.path.exists(p) for p in train.paths)
  i = np.arange(42)
  has_clean = i % 3 == 0
  expected_clean = np.where(i % 2 == 0, i % 14, (i + 1) % 14)
  np.testing.assert_array_equal(
      train.clean_labels, np.where(has_clean, expected_clean, -1)
  )
  np.testing.assert_array_equal(
      train.verified, np.where(has_clean, (i % 2 == 0).astype(int), -1)
  )
  for split, offset in ((data.val, 0), (data.test, 14)):
    np.testing.assert_array_equal(split.labels, (np.arange(14) + offset) % 14)
    np.testing.assert_array_equal(split.clean_labels, split.labels)
    assert np.all(split.verified == 1)
    assert split.paths[0].endswith(f"/50/{5000 + offset}.jpg")


def test_clothing1m_default_class_names(tmp_path):
  notes = _clothing1m(tmp_path)
  os.remove(os.path.join(notes, "category_names_eng.txt"))
  data = folders.read_folder_dataset("clothing1m", str(tmp_path))
  assert data.class_names[3] == "Chiffon" and data.num_classes == 14


def test_subsample_random(tmp_path):
  _clothing1m(tmp_path)
  full = folders.read_folder_dataset("clothing1m", str(tmp_path)).train
  sub = folders.read_folder_dataset(
      "clothing1m", str(tmp_path), num_train_examples=10, seed=3
  ).train
  assert len(sub.paths) == 10
  positions = [list(full.paths).index(p) for p in sub.paths]
  assert positions == sorted(positions)  # The list's order is kept.
  np.testing.assert_array_equal(sub.labels, full.labels[positions])
  np.testing.assert_array_equal(sub.verified, full.verified[positions])
  again = folders.read_folder_dataset(
      "clothing1m", str(tmp_path), num_train_examples=10, seed=3
  ).train
  np.testing.assert_array_equal(again.paths, sub.paths)
  other = folders.read_folder_dataset(
      "clothing1m", str(tmp_path), num_train_examples=10, seed=4
  ).train
  assert not np.array_equal(other.paths, sub.paths)
  everything = folders.read_folder_dataset(
      "clothing1m", str(tmp_path), num_train_examples=100
  ).train
  np.testing.assert_array_equal(everything.paths, full.paths)


@pytest.mark.parametrize(
    "num, expected",
    [(14, [1] * 14), (20, [2] * 6 + [1] * 8), (42, [3] * 14),
     # 4 per class wanted, 3 available: all of them, 42 images.
     (56, [3] * 14)],
)
def test_subsample_balanced(tmp_path, num, expected):
  _clothing1m(tmp_path)
  sub = folders.read_folder_dataset(
      "clothing1m", str(tmp_path), num_train_examples=num, balanced=True
  ).train
  np.testing.assert_array_equal(np.bincount(sub.labels, minlength=14), expected)


def test_balanced_subsample_draws_within_each_class():
  labels = np.repeat(np.arange(3), [50, 5, 20])
  rng = np.random.default_rng(0)
  draws = [folders.balanced_subsample(labels, 30, 3, rng) for _ in range(60)]
  for indices in draws:
    assert np.all(np.diff(indices) > 0)
    np.testing.assert_array_equal(np.bincount(labels[indices]), [10, 5, 10])
  # New draws each time (a new subset per epoch), covering the big class.
  assert len({tuple(d) for d in draws}) == 60
  assert len(set(np.concatenate(draws)) & set(range(50))) == 50


# ---------------------------------------------------------------------------
# WebVision
# ---------------------------------------------------------------------------


def _synset(c: int) -> str:
  return f"n{1440764 + c:08d}"


def _webvision(root, per_class=1, val_folder="val_images_256"):
  """Google images of all 1000 classes, Flickr images of a few."""
  info = os.path.join(root, "info")
  google, flickr, val = [], [], []
  for c in range(1000):
    for k in range(per_class):
      name = f"google/q{c + 1:04d}/{k:06d}.jpg"
      _image(os.path.join(root, name))
      google.append(f"{name} {c}")
    name = f"val{c + 1:06d}.jpg"
    _image(os.path.join(root, val_folder, name))
    val.append(f"{name} {c}")
  for c in (3, 49, 50, 700):
    name = f"flickr/q{c + 1:04d}/000000.jpg"
    _image(os.path.join(root, name))
    flickr.append(f"{name} {c}")
  _write(os.path.join(info, "train_filelist_google.txt"), google)
  _write(os.path.join(info, "train_filelist_flickr.txt"), flickr)
  _write(os.path.join(info, "val_filelist.txt"), val)
  _write(
      os.path.join(info, "synsets.txt"),
      [f"{_synset(c)} animal {c}, beast" for c in range(1000)],
  )
  return info


def test_webvision_mini(tmp_path):
  _webvision(tmp_path, per_class=2)
  data = folders.read_folder_dataset("webvision_mini", str(tmp_path))
  assert data.num_classes == 50 and data.class_names[7] == "animal 7, beast"
  assert data.val is None and data.val_kind == "noisy_split"
  # The Google images of the first 50 classes; no Flickr image.
  np.testing.assert_array_equal(data.train.labels, np.repeat(np.arange(50), 2))
  assert all("/google/" in p for p in data.train.paths)
  assert np.all(data.train.clean_labels == -1)
  assert np.all(data.train.verified == -1)
  np.testing.assert_array_equal(data.test.labels, np.arange(50))
  assert data.test.paths[0] == os.path.join(
      str(tmp_path), "val_images_256", "val000001.jpg"
  )


def test_webvision_full_and_full_size_val_folder(tmp_path):
  _webvision(tmp_path, val_folder="val_images")
  data = folders.read_folder_dataset("webvision", str(tmp_path))
  assert data.num_classes == 1000 and len(data.test.paths) == 1000
  assert len(data.train.paths) == 1004
  flickr = [p for p in data.train.paths if "/flickr/" in p]
  assert len(flickr) == 4
  assert data.test.paths[0].endswith("val_images/val000001.jpg")


def test_webvision_imagenet_val_label_file(tmp_path):
  _webvision(tmp_path)
  imagenet = tmp_path / "ILSVRC2012_val"
  lines = []
  for i in range(120):  # Labels 0..59: only those < 50 are kept.
    name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
    _image(imagenet / name)
    lines.append(f"{name} {i % 60}")
  _write(imagenet / "val.txt", lines)
  data = folders.read_folder_dataset(
      "webvision_mini", str(tmp_path), imagenet_val_dir=str(imagenet)
  )
  extra = data.extra_tests["imagenet_val"]
  keep = np.arange(120) % 60 < 50
  np.testing.assert_array_equal(extra.labels, (np.arange(120) % 60)[keep])
  np.testing.assert_array_equal(extra.clean_labels, extra.labels)
  assert extra.paths[0] == str(imagenet / "ILSVRC2012_val_00000001.JPEG")


def test_webvision_imagenet_val_class_folders(tmp_path):
  info = _webvision(tmp_path)
  imagenet = tmp_path / "val"
  for c in range(52):
    _image(imagenet / _synset(c) / f"ILSVRC2012_val_{c:08d}.JPEG")
  (imagenet / _synset(0) / "readme.txt").write_text("not an image")
  data = folders.read_folder_dataset(
      "webvision_mini", str(tmp_path), imagenet_val_dir=str(imagenet)
  )
  extra = data.extra_tests["imagenet_val"]
  np.testing.assert_array_equal(extra.labels, np.arange(50))
  assert extra.paths[3].endswith(f"{_synset(3)}/ILSVRC2012_val_00000003.JPEG")
  # Class folders need synsets.txt to be mapped to labels.
  os.remove(os.path.join(info, "synsets.txt"))
  with pytest.raises(errors.MissingDataError) as excinfo:
    folders.read_folder_dataset(
        "webvision_mini", str(tmp_path), imagenet_val_dir=str(imagenet)
    )
  _one_line_error(excinfo, "synsets.txt", str(imagenet))


def test_webvision_imagenet_val_missing_class_folder(tmp_path):
  _webvision(tmp_path)
  imagenet = tmp_path / "val"
  for c in range(49):
    _image(imagenet / _synset(c) / "a.JPEG")
  with pytest.raises(errors.MissingDataError) as excinfo:
    folders.read_folder_dataset(
        "webvision_mini", str(tmp_path), imagenet_val_dir=str(imagenet)
    )
  _one_line_error(excinfo, str(imagenet / _synset(49)), "class 49")


# ---------------------------------------------------------------------------
# Food-101N
# ---------------------------------------------------------------------------

_FOOD = [f"food_{c:03d}" for c in range(101)]


def _food101n(root, food101_parent=None):
  """Food-101N_release with 2 images per class, and Food-101's test split."""
  release = os.path.join(root, "Food-101N_release")
  meta = os.path.join(release, "meta")
  _write(os.path.join(meta, "classes.txt"), ["class_name"] + _FOOD)
  keys = []
  for c, name in enumerate(_FOOD):
    for k in range(2):
      key = f"{name}/{c:03d}{k}abcdef.jpg"
      _image(os.path.join(release, "images", key))
      keys.append(key)
  _write(os.path.join(meta, "imagelist.tsv"), ["class_name/key"] + keys)
  header = "class_name/key\tverification_label"
  _write(
      os.path.join(meta, "verified_train.tsv"),
      [header, f"{keys[0]}\t1", f"{keys[1]}\t0",
       # The release's quirk: a key under another class than in the list.
       f"{_FOOD[7]}/{keys[2].split('/')[1]}\t1"],
  )
  _write(os.path.join(meta, "verified_val.tsv"), [header, f"{keys[5]}\t0"])
  food101 = os.path.join(food101_parent or root, "food-101")
  tests = []
  for c, name in enumerate(_FOOD):
    _image(os.path.join(food101, "images", name, f"{100 + c}.jpg"))
    tests.append(f"{name}/{100 + c}")
  _write(os.path.join(food101, "meta", "test.txt"), tests)
  _write(os.path.join(food101, "meta", "classes.txt"), _FOOD)
  return release, food101


def test_food101n(tmp_path):
  release, _ = _food101n(tmp_path)
  data = folders.read_folder_dataset("food-101N", release)
  assert data.class_names == tuple(_FOOD) and data.val is None
  assert data.val_kind == "noisy_split"
  np.testing.assert_array_equal(data.train.labels, np.repeat(np.arange(101), 2))
  verified = np.full(202, -1)
  verified[[0, 1, 5]] = [1, 0, 0]
  np.testing.assert_array_equal(data.train.verified, verified)
  clean = np.full(202, -1)
  clean[0] = 0
  np.testing.assert_array_equal(data.train.clean_labels, clean)
  assert data.train.paths[0] == os.path.join(
      release, "images", "food_000", "0000abcdef.jpg"
  )
  np.testing.assert_array_equal(data.test.labels, np.arange(101))
  assert data.test.paths[4] == os.path.join(
      str(tmp_path), "food-101", "images", "food_004", "104.jpg"
  )


def test_food101n_finds_food101_inside_or_at_food101_dir(tmp_path):
  release, _ = _food101n(tmp_path, food101_parent=str(tmp_path / "x" / "y"))
  with pytest.raises(errors.MissingDataError) as excinfo:
    folders.read_folder_dataset("food101n", release)
  _one_line_error(
      excinfo, os.path.join(release, "food-101", "meta", "test.txt"),
      os.path.join(str(tmp_path), "food-101", "meta", "test.txt"),
      "food101_dir",
  )
  food101 = str(tmp_path / "x" / "y" / "food-101")
  data = folders.read_folder_dataset("food101n", release, food101_dir=food101)
  assert data.test.paths[0].startswith(food101)
  os.rename(food101, os.path.join(release, "food-101"))
  data = folders.read_folder_dataset("food101n", release)
  assert data.test.paths[0].startswith(os.path.join(release, "food-101"))


# ---------------------------------------------------------------------------
# ANIMAL-10N
# ---------------------------------------------------------------------------


def _animal10n(root):
  for split, count in (("training", 30), ("testing", 10)):
    for i in range(count):
      _image(os.path.join(root, split, f"{i % 10}_{i:05d}.jpg"))
  with open(os.path.join(root, "training", ".DS_Store"), "w") as f:
    f.write("not an image")


def test_animal10n(tmp_path):
  _animal10n(tmp_path)
  data = folders.read_folder_dataset("ANIMAL-10N", str(tmp_path))
  assert data.class_names == animal10n.CLASS_NAMES and data.val is None
  # Sorted by file name; the label is the number before "_".
  names = sorted(f"{i % 10}_{i:05d}.jpg" for i in range(30))
  assert [os.path.basename(p) for p in data.train.paths] == names
  np.testing.assert_array_equal(
      data.train.labels, [int(n.split("_")[0]) for n in names]
  )
  assert np.all(data.train.clean_labels == -1)
  np.testing.assert_array_equal(data.test.clean_labels, data.test.labels)
  assert np.bincount(data.test.labels).tolist() == [1] * 10


# ---------------------------------------------------------------------------
# Bad input: one line naming the file (and the line)
# ---------------------------------------------------------------------------


def _edit(path, line, text):
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  if text is None:
    del lines[line - 1]
  else:
    lines[line - 1] = text
  _write(path, lines)


@pytest.mark.parametrize(
    "file, line, text, fragments",
    [
        ("noisy_label_kv.txt", 4, "images/3/03/1003.jpg 14",
         ["line 4", "label 14 is outside [0, 14)"]),
        ("noisy_label_kv.txt", 2, "images/1/01/1001.jpg",
         ["line 2", "expected '<image path> <label>'"]),
        ("clean_label_kv.txt", 1, "images/0/00/1000.jpg three",
         ["line 1", "label 'three' is not an integer"]),
        ("noisy_train_key_list.txt", 3, "images/2/02/gone.jpg",
         ["line 3", "key images/2/02/gone.jpg is not in",
          "noisy_label_kv.txt"]),
        ("clean_test_key_list.txt", 2, "images/1/50/5015.jpg 1",
         ["line 2", "expected one image key"]),
    ],
)
def test_clothing1m_bad_lines(tmp_path, file, line, text, fragments):
  notes = _clothing1m(tmp_path)
  path = os.path.join(notes, file)
  _edit(path, line, text)
  with pytest.raises(errors.UserError) as excinfo:
    folders.read_folder_dataset("clothing1m", str(tmp_path))
  _one_line_error(excinfo, path, *fragments)


def test_missing_image_names_list_and_line(tmp_path):
  notes = _clothing1m(tmp_path)
  os.remove(tmp_path / "images/6/06/1006.jpg")
  with pytest.raises(errors.UserError) as excinfo:
    folders.read_folder_dataset("clothing1m", str(tmp_path))
  _one_line_error(
      excinfo, os.path.join(notes, "noisy_train_key_list.txt"), "line 7",
      f"image {tmp_path}/images/6/06/1006.jpg does not exist",
  )


def test_missing_files_and_folders(tmp_path):
  notes = _clothing1m(tmp_path)
  os.remove(os.path.join(notes, "clean_test_key_list.txt"))
  with pytest.raises(errors.MissingDataError) as excinfo:
    folders.read_folder_dataset("clothing1m", str(tmp_path))
  _one_line_error(
      excinfo, os.path.join(notes, "clean_test_key_list.txt"), "no such file"
  )
  with pytest.raises(errors.MissingDataError) as excinfo:
    folders.read_folder_dataset("clothing1m", str(tmp_path / "nowhere"))
  _one_line_error(excinfo, str(tmp_path / "nowhere"), "no such folder")
  with pytest.raises(errors.MissingDataError) as excinfo:
    folders.read_folder_dataset("animal10n", str(tmp_path))
  _one_line_error(excinfo, str(tmp_path / "training"), "no such folder")
  with pytest.raises(errors.MissingDataError) as excinfo:
    folders.read_folder_dataset("webvision", str(tmp_path))
  _one_line_error(excinfo, str(tmp_path / "info"), "no such folder")


def test_empty_class(tmp_path):
  notes = _clothing1m(tmp_path)
  path = os.path.join(notes, "noisy_train_key_list.txt")
  with open(path) as f:
    keys = f.read().split()
  # Class 5 (Hoodie) is every 14th image from the 6th.
  _write(path, [k for i, k in enumerate(keys) if i % 14 != 5])
  with pytest.raises(errors.UserError) as excinfo:
    folders.read_folder_dataset("clothing1m", str(tmp_path))
  _one_line_error(excinfo, path, "no image of class 5 (Hoodie)")


def test_webvision_bad_label_and_missing_val_images(tmp_path):
  info = _webvision(tmp_path)
  path = os.path.join(info, "train_filelist_google.txt")
  _edit(path, 10, "google/q0010/000000.jpg 1000")
  with pytest.raises(errors.UserError) as excinfo:
    folders.read_folder_dataset("webvision_mini", str(tmp_path))
  _one_line_error(excinfo, path, "line 10", "outside [0, 1000)")
  _edit(path, 10, "google/q0010/000000.jpg 9")
  os.rename(tmp_path / "val_images_256", tmp_path / "elsewhere")
  with pytest.raises(errors.MissingDataError) as excinfo:
    folders.read_folder_dataset("webvision_mini", str(tmp_path))
  _one_line_error(excinfo, "val_images_256", "val_images")


@pytest.mark.parametrize(
    "file, line, text, fragments",
    [
        ("imagelist.tsv", 3, "pizza_and_chips/xyz.jpg",
         ["line 3", "class 'pizza_and_chips' is not in meta/classes.txt"]),
        ("imagelist.tsv", 4, "no_slash.jpg",
         ["line 4", "expected '<class name>/<image>'"]),
        ("verified_val.tsv", 2, "food_000/0000abcdef.jpg\tyes",
         ["line 2", "0 or 1"]),
        ("classes.txt", 3, "food_000",
         ["expected 101 distinct class names, found 100"]),
    ],
)
def test_food101n_bad_lines(tmp_path, file, line, text, fragments):
  release, _ = _food101n(tmp_path)
  path = os.path.join(release, "meta", file)
  _edit(path, line, text)
  with pytest.raises(errors.UserError) as excinfo:
    folders.read_folder_dataset("food101n", release)
  _one_line_error(excinfo, path, *fragments)


@pytest.mark.parametrize(
    "name, fragment",
    [("cat_00001.jpg", "does not start with '<label>_'"),
     ("12_00001.jpg", "label 12 is outside [0, 10)")],
)
def test_animal10n_bad_file_names(tmp_path, name, fragment):
  _animal10n(tmp_path)
  _image(os.path.join(tmp_path, "testing", name))
  with pytest.raises(errors.UserError) as excinfo:
    folders.read_folder_dataset("animal10n", str(tmp_path))
  _one_line_error(excinfo, os.path.join(tmp_path, "testing", name), fragment)


@pytest.mark.parametrize(
    "name, kwargs, fragment",
    [
        ("mnist", {}, "mnist is not read from release folders"),
        ("clothing1m", {"imagenet_val_dir": "/x"},
         "imagenet_val_dir is for webvision / webvision_mini, not clothing1m"),
        ("animal10n", {"food101_dir": "/x"}, "food101_dir is for food101n"),
        ("clothing1m", {"num_train_examples": 0},
         "num_train_examples must be positive"),
        ("clothing1m", {"balanced": True}, "balanced subsampling needs"),
        ("svhn", {}, "unknown dataset 'svhn'"),
    ],
)
def test_bad_arguments(tmp_path, name, kwargs, fragment):
  with pytest.raises(errors.UserError) as excinfo:
    folders.read_folder_dataset(name, str(tmp_path), **kwargs)
  _one_line_error(excinfo, fragment)


def test_needs_data_dir():
  with pytest.raises(errors.UserError) as excinfo:
    folders.read_folder_dataset("clothing1m", None)
  _one_line_error(excinfo, "clothing1m needs data_dir")


# ---------------------------------------------------------------------------
# Spec rows
# ---------------------------------------------------------------------------


def test_spec_rows_for_the_input_workers():
  for spec in specs.SPECS.values():
    assert spec.policy in specs.POLICIES
    # The device path's flag and the workers' policy agree.
    assert spec.augment == (spec.policy == "crop_flip")
    assert spec.eval_resize >= spec.eval_size
  layouts = {s.name: s.layout for s in specs.SPECS.values() if s.layout}
  assert layouts == {name: name for name in folders.LAYOUTS}
  sizes = {
      n: (s.train_size, s.eval_resize, s.eval_size, s.policy)
      for n, s in specs.SPECS.items()
  }
  rrc = "random_resized_crop"
  assert sizes["clothing1m"] == sizes["food101n"] == (224, 256, 224, rrc)
  assert sizes["webvision"] == sizes["webvision_mini"] == (299, 342, 299, rrc)
  assert sizes["animal10n"] == (64, 64, 64, "crop_flip")
  assert sizes["cifar10"] == sizes["cifar100_n"] == (32, 32, 32, "crop_flip")
  assert sizes["fashion_mnist"] == (28, 28, 28, "none")
  assert sizes["food101"] == (224, 256, 224, rrc)
  imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
  for name in folders.LAYOUTS:
    assert specs.SPECS[name][2:4] == imagenet
