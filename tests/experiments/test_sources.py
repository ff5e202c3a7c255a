"""Tests for experiments.data's sources: specs, IDX, npy, tfds and loading."""

import gzip
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import data
from experiments.data import specs
from experiments.data import tfds_source

# ---------------------------------------------------------------------------
# IDX files written by the tests
# ---------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
  """Serializes a uint8 array in the IDX format (big-endian header)."""
  magic = 0x0800 | array.ndim
  header = np.array((magic,) + array.shape, ">u4").tobytes()
  return header + array.astype(np.uint8).tobytes()


def write_idx_dir(directory, gz: bool, n_train=7, n_test=3, shape=(4, 5)):
  """Writes the four MNIST-format files; returns the arrays written."""
  rng = np.random.default_rng(0)
  arrays = {
      "train-images-idx3-ubyte": rng.integers(0, 256, (n_train,) + shape),
      "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
      "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test,) + shape),
      "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
  }
  for stem, array in arrays.items():
    payload = idx_bytes(array)
    if gz:
      with gzip.open(os.path.join(directory, stem + ".gz"), "wb") as f:
        f.write(payload)
    else:
      with open(os.path.join(directory, stem), "wb") as f:
        f.write(payload)
  return arrays


def load_idx(directory, name="mnist"):
  return data.load_dataset(name, source="idx", data_dir=str(directory))


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader(tmp_path, gz):
  arrays = write_idx_dir(tmp_path, gz)
  ds = data.load_dataset("mnist", source="idx", data_dir=str(tmp_path))
  assert ds.name == "mnist" and ds.num_classes == 10
  assert ds.train.images.shape == (7, 4, 5, 1)
  assert ds.train.images.dtype == np.uint8
  assert ds.train.labels.dtype == np.int32
  assert ds.train.clean_labels is None
  np.testing.assert_array_equal(
      ds.train.images[..., 0], arrays["train-images-idx3-ubyte"]
  )
  np.testing.assert_array_equal(
      ds.train.labels, arrays["train-labels-idx1-ubyte"]
  )
  np.testing.assert_array_equal(
      ds.test.images[..., 0], arrays["t10k-images-idx3-ubyte"]
  )
  np.testing.assert_array_equal(
      ds.test.labels, arrays["t10k-labels-idx1-ubyte"]
  )
  # "auto" finds the files in data_dir.
  auto = data.load_dataset("Fashion-MNIST", data_dir=str(tmp_path))
  assert auto.name == "fashion_mnist"
  np.testing.assert_array_equal(auto.train.images, ds.train.images)


def test_idx_bad_magic(tmp_path):
  write_idx_dir(tmp_path, gz=False)
  path = tmp_path / "train-images-idx3-ubyte"
  payload = bytearray(path.read_bytes())
  payload[3] = 0x01  # 2049: a labels file where images are expected.
  path.write_bytes(bytes(payload))
  expected = r"idx3-ubyte: bad IDX magic number 2049, expected 2051"
  with pytest.raises(ValueError, match=expected):
    load_idx(tmp_path)


def test_idx_truncated_raw(tmp_path):
  write_idx_dir(tmp_path, gz=False)
  path = tmp_path / "t10k-images-idx3-ubyte"
  path.write_bytes(path.read_bytes()[:-7])
  expected = r"t10k-images-idx3-ubyte: IDX file truncated: header says"
  with pytest.raises(ValueError, match=expected + r" shape \(3, 4, 5\)"):
    load_idx(tmp_path)


def test_idx_truncated_header(tmp_path):
  write_idx_dir(tmp_path, gz=False)
  path = tmp_path / "train-labels-idx1-ubyte"
  path.write_bytes(path.read_bytes()[:6])
  with pytest.raises(ValueError, match="idx1-ubyte: truncated IDX header"):
    load_idx(tmp_path)


def test_idx_trailing_data(tmp_path):
  write_idx_dir(tmp_path, gz=False)
  path = tmp_path / "train-labels-idx1-ubyte"
  path.write_bytes(path.read_bytes() + b"\0")
  with pytest.raises(ValueError, match="idx1-ubyte: IDX file has trailing"):
    load_idx(tmp_path)


def test_idx_truncated_gzip(tmp_path):
  write_idx_dir(tmp_path, gz=True)
  path = tmp_path / "train-images-idx3-ubyte.gz"
  path.write_bytes(path.read_bytes()[:40])
  with pytest.raises(ValueError, match=r"idx3-ubyte.gz: corrupt gzip"):
    load_idx(tmp_path)


def test_idx_count_mismatch(tmp_path):
  write_idx_dir(tmp_path, gz=False)
  (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(6)))
  expected = "7 images but .*train-labels-idx1-ubyte has 6 labels"
  with pytest.raises(ValueError, match=expected):
    load_idx(tmp_path)


def test_idx_missing_file_says_what_to_install(tmp_path):
  write_idx_dir(tmp_path, gz=True)
  os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
  expected = "no t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz in"
  with pytest.raises(FileNotFoundError, match=expected) as error:
    load_idx(tmp_path, "fashion_mnist")
  assert "`apt-get install dataset-fashion-mnist`" in str(error.value)


def test_idx_labels_out_of_range(tmp_path):
  write_idx_dir(tmp_path, gz=False)
  (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(7, 10)))
  expected = r"mnist train labels lie in \[10, 10\], outside \[0, 10\)"
  with pytest.raises(ValueError, match=expected):
    load_idx(tmp_path)


# ---------------------------------------------------------------------------
# npy layout
# ---------------------------------------------------------------------------


def write_npy_dir(directory, train_images, test_images, train_labels=None):
  n_train, n_test = len(train_images), len(test_images)
  if train_labels is None:
    train_labels = np.arange(n_train) % 10
  np.save(os.path.join(directory, "train_images.npy"), train_images)
  np.save(os.path.join(directory, "train_labels.npy"), train_labels)
  np.save(os.path.join(directory, "test_images.npy"), test_images)
  np.save(os.path.join(directory, "test_labels.npy"), np.arange(n_test) % 10)


NHWC = np.random.default_rng(0).integers(0, 256, (6, 8, 9, 3)).astype(np.uint8)


@pytest.mark.parametrize(
    "layout,expected",
    [
        ("nhw", NHWC[..., :1]),
        ("nhwc", NHWC),
        ("nchw", NHWC),
        ("nhw1", NHWC[..., :1]),
    ],
)
def test_npy_layouts(tmp_path, layout, expected):
  images = {
      "nhw": NHWC[..., 0],
      "nhwc": NHWC,
      "nchw": NHWC.transpose(0, 3, 1, 2),
      "nhw1": NHWC[..., :1],
  }[layout]
  write_npy_dir(tmp_path, images, images[:2])
  ds = data.load_dataset("cifar10", source="npy", data_dir=str(tmp_path))
  np.testing.assert_array_equal(ds.train.images, expected)
  np.testing.assert_array_equal(ds.test.images, expected[:2])
  np.testing.assert_array_equal(ds.train.labels, np.arange(6) % 10)
  assert ds.train.labels.dtype == np.int32
  auto = data.load_dataset("cifar10", data_dir=str(tmp_path))
  np.testing.assert_array_equal(auto.train.images, expected)


def test_npy_column_labels(tmp_path):
  write_npy_dir(tmp_path, NHWC, NHWC, train_labels=np.arange(6)[:, None])
  ds = data.load_dataset("cifar10", source="npy", data_dir=str(tmp_path))
  np.testing.assert_array_equal(ds.train.labels, np.arange(6))


@pytest.mark.parametrize(
    "train_images,train_labels,expected",
    [
        (NHWC.astype(np.float32), None, "images.npy: images must be uint8"),
        (NHWC[..., :2], None, r"must be .* got shape \(6, 8, 9, 2\)"),
        (NHWC, np.arange(5), "6 images but .*train_labels.npy has 5 labels"),
        (NHWC, np.zeros(6), "train_labels.npy: labels must be a 1-D integer"),
    ],
)
def test_npy_errors(tmp_path, train_images, train_labels, expected):
  write_npy_dir(tmp_path, train_images, NHWC, train_labels)
  with pytest.raises(ValueError, match=expected):
    data.load_dataset("cifar10", source="npy", data_dir=str(tmp_path))


def test_npy_missing_file(tmp_path):
  write_npy_dir(tmp_path, NHWC, NHWC)
  os.remove(tmp_path / "test_labels.npy")
  with pytest.raises(FileNotFoundError, match="missing .*test_labels.npy"):
    data.load_dataset("cifar10", source="npy", data_dir=str(tmp_path))


# ---------------------------------------------------------------------------
# The dataset table
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling,name",
    [
        ("mnist", "mnist"),
        ("Fashion-MNIST", "fashion_mnist"),
        ("fmnist", "fashion_mnist"),
        ("F_MNIST", "fashion_mnist"),
        ("CIFAR100", "cifar100"),
        ("cifar10-n", "cifar10_n"),
        ("Food101", "food101"),
    ],
)
def test_canonical_name_and_spec(spelling, name):
  assert specs.canonical_name(spelling) == name
  spec = data.get_spec(spelling)
  assert isinstance(spec, data.DatasetSpec)
  assert spec is specs.SPECS[name] and spec.name == name


def test_specs_table():
  assert set(specs.SPECS) == {
      "mnist", "fashion_mnist", "cifar10", "cifar10_n", "cifar100",
      "cifar100_n", "food101", "clothing1m", "webvision", "webvision_mini",
      "food101n", "animal10n",
  }
  assert specs.NUM_CLASSES == {
      "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar10_n": 10,
      "cifar100": 100, "cifar100_n": 100, "food101": 101, "clothing1m": 14,
      "webvision": 1000, "webvision_mini": 50, "food101n": 101,
      "animal10n": 10,
  }
  for spec in specs.SPECS.values():
    assert len(spec.mean) == len(spec.std) and min(spec.std) > 0
  # Real-noise variants share the statistics of their clean dataset.
  assert specs.SPECS["cifar10_n"][2:] == specs.SPECS["cifar10"][2:]
  assert specs.SPECS["cifar100_n"][2:] == specs.SPECS["cifar100"][2:]
  # Food-101's tfds test split is called "validation".
  assert specs.SPECS["food101"].tfds_splits == ("train", "validation")
  assert specs.SPECS["cifar10"].tfds_splits == ("train", "test")


def test_augmentation_flags():
  # The paper trains the CIFAR datasets with crop + flip, the others without.
  assert data.get_spec("cifar10").augment and data.get_spec("CIFAR100").augment
  assert data.get_spec("cifar10_n").augment
  assert data.get_spec("cifar100_n").augment
  assert not data.get_spec("mnist").augment
  assert not data.get_spec("fashion-mnist").augment
  assert not data.get_spec("food101").augment


def test_unknown_name_lists_known_ones():
  with pytest.raises(ValueError, match="unknown dataset 'svhn'") as error:
    data.get_spec("svhn")
  for name in specs.SPECS:
    assert repr(name) in str(error.value)


# ---------------------------------------------------------------------------
# Names, sources, arguments
# ---------------------------------------------------------------------------


def test_unknown_dataset_lists_known_ones():
  with pytest.raises(ValueError, match="unknown dataset 'svhn'") as error:
    data.load_dataset("svhn")
  for name in specs.SPECS:
    assert repr(name) in str(error.value)


def test_unknown_source():
  with pytest.raises(ValueError, match=r"unknown source 'hdf5'; valid sources"):
    data.load_dataset("mnist", source="hdf5")


def test_local_source_needs_data_dir():
  with pytest.raises(ValueError, match="source='npy' needs data_dir"):
    data.load_dataset("mnist", source="npy")


@pytest.mark.parametrize("source", ["auto", "tfds", "idx", "npy"])
@pytest.mark.parametrize("kind", ["missing", "file"])
def test_data_dir_that_is_not_a_directory(tmp_path, source, kind):
  write_idx_dir(tmp_path, gz=False)
  path = tmp_path / "nowhere"
  if kind == "file":
    path = tmp_path / "train-images-idx3-ubyte"
  expected = f"data_dir {path} is not a directory"
  with pytest.raises(FileNotFoundError, match=expected):
    data.load_dataset("mnist", source=source, data_dir=str(path))


def test_tfds_only_arguments_rejected_for_local_files(tmp_path):
  write_idx_dir(tmp_path, gz=False)
  expected = "label_field and image_size apply to source='tfds'"
  with pytest.raises(ValueError, match=expected):
    data.load_dataset("mnist", data_dir=str(tmp_path), label_field="label")


# ---------------------------------------------------------------------------
# tfds through tfds.data_source under tfds.testing.mock_data
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name,shape,num_classes",
    [
        ("mnist", (28, 28, 1), 10),
        ("fashion_mnist", (28, 28, 1), 10),
        ("cifar10", (32, 32, 3), 10),
        ("cifar100", (32, 32, 3), 100),
    ],
)
def test_tfds_mock(name, shape, num_classes):
  with tfds.testing.mock_data(num_examples=5):
    ds = data.load_dataset(name, source="tfds")
  assert ds.name == name and ds.num_classes == num_classes
  for split in (ds.train, ds.test):
    assert split.images.shape == (5,) + shape
    assert split.images.dtype == np.uint8
    assert split.labels.dtype == np.int32 and split.labels.shape == (5,)
    assert ((split.labels >= 0) & (split.labels < num_classes)).all()
    assert split.clean_labels is None


@pytest.mark.parametrize(
    "name,field,num_classes",
    [
        ("cifar10_n", "worse_label", 10),
        ("cifar10_n", "aggre_label", 10),
        ("cifar10_n", "random_label1", 10),
        ("cifar100_n", "noise_label", 100),
    ],
)
def test_tfds_real_noise_label_field(name, field, num_classes):
  with tfds.testing.mock_data(num_examples=20):
    truth = data.load_dataset(name, source="tfds")
    noisy = data.load_dataset(name, source="tfds", label_field=field)
    source = tfds.data_source(name, split="train", download=False)
    field_labels = [int(source[i][field]) for i in range(20)]
  assert noisy.num_classes == num_classes
  np.testing.assert_array_equal(noisy.train.labels, field_labels)
  np.testing.assert_array_equal(noisy.train.clean_labels, truth.train.labels)
  # Test labels stay the ground truth (the human labels are train-only).
  np.testing.assert_array_equal(noisy.test.labels, truth.test.labels)
  assert noisy.test.clean_labels is None
  # The synthetic-noise protocol then measures against the ground truth.
  split = data.make_noisy_dataset(noisy, "none", 0.0, seed=0, val_fraction=0.25)
  expected = np.mean(noisy.train.labels != noisy.train.clean_labels)
  assert split.realized_rate == pytest.approx(expected)
  assert split.transition is None


def test_tfds_unknown_label_field():
  with tfds.testing.mock_data(num_examples=2):
    expected = (
        r"cifar10_n has no label field 'noisy_label'; its label fields are"
        r" \['aggre_label', 'label', 'random_label1', 'random_label2',"
        r" 'random_label3', 'worse_label'\]"
    )
    with pytest.raises(ValueError, match=expected):
      data.load_dataset("cifar10_n", source="tfds", label_field="noisy_label")


def test_tfds_food101_variable_sizes_are_resized():
  with tfds.testing.mock_data(num_examples=3):
    small = data.load_dataset("food101", source="tfds", image_size=16)
    default = data.load_dataset("food101", source="tfds")
  assert small.num_classes == 101
  assert small.train.images.shape == (3, 16, 16, 3)
  assert small.test.images.shape == (3, 16, 16, 3)
  side = tfds_source.VARIABLE_SIZE_DEFAULT
  assert default.train.images.shape == (3, side, side, 3)


def test_tfds_missing_dataset_says_how_to_prepare(tmp_path):
  expected = "tfds build mnist --file_format=array_record"
  with pytest.raises(FileNotFoundError, match=expected):
    data.load_dataset("mnist", source="tfds", data_dir=str(tmp_path))


# ---------------------------------------------------------------------------
# Real Fashion-MNIST (Debian package dataset-fashion-mnist)
# ---------------------------------------------------------------------------


def test_real_fashion_mnist(fashion_mnist):
  ds = fashion_mnist
  assert ds.name == "fashion_mnist" and ds.num_classes == 10
  assert ds.train.images.shape == (60000, 28, 28, 1)
  assert ds.test.images.shape == (10000, 28, 28, 1)
  assert ds.train.images.dtype == np.uint8
  np.testing.assert_array_equal(np.bincount(ds.train.labels), [6000] * 10)
  np.testing.assert_array_equal(np.bincount(ds.test.labels), [1000] * 10)
  # The statistics `normalize` uses are those of this training set.
  x = ds.train.images / 255.0
  assert x.mean() == pytest.approx(0.2860, abs=1e-3)
  assert x.std() == pytest.approx(0.3530, abs=1e-3)
  spec = data.get_spec("fashion_mnist")
  assert spec.mean == (0.2860,) and spec.std == (0.3530,)
