"""Tests for experiments.input_pipeline: sources, split, preprocessing."""

import gzip
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import input_pipeline as ip
from experiments import noise

# ---------------------------------------------------------------------------
# Fixtures: small files written by the tests
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
    data = idx_bytes(array)
    if gz:
      with gzip.open(os.path.join(directory, stem + ".gz"), "wb") as f:
        f.write(data)
    else:
      with open(os.path.join(directory, stem), "wb") as f:
        f.write(data)
  return arrays


def load_idx(directory, name="mnist"):
  return ip.load_dataset(name, source="idx", data_dir=str(directory))


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader(tmp_path, gz):
  arrays = write_idx_dir(tmp_path, gz)
  ds = ip.load_dataset("mnist", source="idx", data_dir=str(tmp_path))
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
  auto = ip.load_dataset("Fashion-MNIST", data_dir=str(tmp_path))
  assert auto.name == "fashion_mnist"
  np.testing.assert_array_equal(auto.train.images, ds.train.images)


def test_idx_bad_magic(tmp_path):
  write_idx_dir(tmp_path, gz=False)
  path = tmp_path / "train-images-idx3-ubyte"
  data = bytearray(path.read_bytes())
  data[3] = 0x01  # 2049: a labels file where images are expected.
  path.write_bytes(bytes(data))
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
  ds = ip.load_dataset("cifar10", source="npy", data_dir=str(tmp_path))
  np.testing.assert_array_equal(ds.train.images, expected)
  np.testing.assert_array_equal(ds.test.images, expected[:2])
  np.testing.assert_array_equal(ds.train.labels, np.arange(6) % 10)
  assert ds.train.labels.dtype == np.int32
  auto = ip.load_dataset("cifar10", data_dir=str(tmp_path))
  np.testing.assert_array_equal(auto.train.images, expected)


def test_npy_column_labels(tmp_path):
  write_npy_dir(tmp_path, NHWC, NHWC, train_labels=np.arange(6)[:, None])
  ds = ip.load_dataset("cifar10", source="npy", data_dir=str(tmp_path))
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
    ip.load_dataset("cifar10", source="npy", data_dir=str(tmp_path))


def test_npy_missing_file(tmp_path):
  write_npy_dir(tmp_path, NHWC, NHWC)
  os.remove(tmp_path / "test_labels.npy")
  with pytest.raises(FileNotFoundError, match="missing .*test_labels.npy"):
    ip.load_dataset("cifar10", source="npy", data_dir=str(tmp_path))


# ---------------------------------------------------------------------------
# Names, sources, arguments
# ---------------------------------------------------------------------------


def test_unknown_dataset_lists_known_ones():
  with pytest.raises(ValueError, match="unknown dataset 'svhn'") as error:
    ip.load_dataset("svhn")
  for name in ip.NUM_CLASSES:
    assert repr(name) in str(error.value)


def test_unknown_source():
  with pytest.raises(ValueError, match=r"unknown source 'hdf5'; valid sources"):
    ip.load_dataset("mnist", source="hdf5")


def test_local_source_needs_data_dir():
  with pytest.raises(ValueError, match="source='npy' needs data_dir"):
    ip.load_dataset("mnist", source="npy")


def test_tfds_only_arguments_rejected_for_local_files(tmp_path):
  write_idx_dir(tmp_path, gz=False)
  expected = "label_field and image_size apply to source='tfds'"
  with pytest.raises(ValueError, match=expected):
    ip.load_dataset("mnist", data_dir=str(tmp_path), label_field="label")


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
    ds = ip.load_dataset(name, source="tfds")
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
    truth = ip.load_dataset(name, source="tfds")
    noisy = ip.load_dataset(name, source="tfds", label_field=field)
    source = tfds.data_source(name, split="train", download=False)
    field_labels = [int(source[i][field]) for i in range(20)]
  assert noisy.num_classes == num_classes
  np.testing.assert_array_equal(noisy.train.labels, field_labels)
  np.testing.assert_array_equal(noisy.train.clean_labels, truth.train.labels)
  # Test labels stay the ground truth (the human labels are train-only).
  np.testing.assert_array_equal(noisy.test.labels, truth.test.labels)
  assert noisy.test.clean_labels is None
  # The synthetic-noise protocol then measures against the ground truth.
  split = ip.make_noisy_dataset(noisy, "none", 0.0, seed=0, val_fraction=0.25)
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
      ip.load_dataset("cifar10_n", source="tfds", label_field="noisy_label")


def test_tfds_food101_variable_sizes_are_resized():
  with tfds.testing.mock_data(num_examples=3):
    small = ip.load_dataset("food101", source="tfds", image_size=16)
    default = ip.load_dataset("food101", source="tfds")
  assert small.num_classes == 101
  assert small.train.images.shape == (3, 16, 16, 3)
  assert small.test.images.shape == (3, 16, 16, 3)
  side = ip.VARIABLE_SIZE_DEFAULT
  assert default.train.images.shape == (3, side, side, 3)


def test_tfds_missing_dataset_says_how_to_prepare(tmp_path):
  expected = "tfds build mnist --file_format=array_record"
  with pytest.raises(FileNotFoundError, match=expected):
    ip.load_dataset("mnist", source="tfds", data_dir=str(tmp_path))


# ---------------------------------------------------------------------------
# Real Fashion-MNIST (Debian package dataset-fashion-mnist)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion_mnist():
  if not os.path.isdir(ip.DEBIAN_FASHION_MNIST_DIR):
    pytest.skip(
        f"Fashion-MNIST not installed in {ip.DEBIAN_FASHION_MNIST_DIR};"
        " run `apt-get install dataset-fashion-mnist`."
    )
  return ip.load_dataset("fashion_mnist")


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


@pytest.mark.parametrize("noise_type", ["symmetric", "pairflip", "instance"])
def test_real_fashion_mnist_noise(fashion_mnist, noise_type):
  nd = ip.make_noisy_dataset(fashion_mnist, noise_type, 0.4, seed=0)
  assert nd.train_images.shape == (54000, 28, 28, 1)
  assert nd.val_images.shape == (6000, 28, 28, 1)
  assert abs(nd.realized_rate - 0.4) < 0.01


# ---------------------------------------------------------------------------
# Noise + split protocol
# ---------------------------------------------------------------------------


def indexed_dataset(n=1000, num_classes=10, clean_labels=None):
  """Images that spell their own index, so splits can be traced back."""
  index = np.arange(n)
  images = np.stack([index // 256, index % 256], axis=-1).astype(np.uint8)
  images = images.reshape(n, 1, 2, 1)
  labels = (index * 7 % num_classes).astype(np.int32)
  train = ip.Split(images, labels, clean_labels)
  test = ip.Split(images[:50], labels[:50])
  return ip.Dataset("mnist", num_classes, train, test)


def decode_index(images):
  return images[:, 0, 0, 0].astype(int) * 256 + images[:, 0, 1, 0]


@pytest.mark.parametrize(
    "noise_type", ["none", "symmetric", "pairflip", "asymmetric", "instance"]
)
def test_split_protocol(noise_type):
  ds = indexed_dataset()
  rate = 0.0 if noise_type == "none" else 0.4
  nd = ip.make_noisy_dataset(ds, noise_type, rate, seed=5)
  train_idx = decode_index(nd.train_images)
  val_idx = decode_index(nd.val_images)
  assert len(train_idx) == 900 and len(val_idx) == 100
  assert not set(train_idx) & set(val_idx)
  np.testing.assert_array_equal(
      np.sort(np.concatenate([train_idx, val_idx])), np.arange(1000)
  )
  # Noise was drawn on the whole training set before the split.
  whole = noise.add_noise(
      noise_type, labels=ds.train.labels, rate=rate, num_classes=10, seed=5,
      features=ds.train.images, dataset="mnist",
  )
  np.testing.assert_array_equal(nd.train_labels, whole.labels[train_idx])
  np.testing.assert_array_equal(nd.val_labels, whole.labels[val_idx])
  np.testing.assert_array_equal(
      nd.train_clean_labels, ds.train.labels[train_idx]
  )
  np.testing.assert_array_equal(nd.val_clean_labels, ds.train.labels[val_idx])
  assert nd.realized_rate == whole.realized_rate
  if noise_type != "none":  # Validation labels stay noisy.
    assert (nd.val_labels != nd.val_clean_labels).any()
  np.testing.assert_array_equal(nd.test_images, ds.test.images)
  np.testing.assert_array_equal(nd.test_labels, ds.test.labels)
  assert nd.noise_type == noise_type and nd.noise_rate == rate
  assert nd.name == "mnist" and nd.num_classes == 10
  if noise_type == "instance":
    assert nd.transition is None
  else:
    np.testing.assert_array_equal(
        nd.transition,
        noise.transition_matrix(noise_type, rate, 10, "mnist"),
    )


def test_split_is_seeded():
  ds = indexed_dataset()
  first = ip.make_noisy_dataset(ds, "symmetric", 0.2, seed=3)
  again = ip.make_noisy_dataset(ds, "symmetric", 0.2, seed=3)
  other = ip.make_noisy_dataset(ds, "symmetric", 0.2, seed=4)
  for a, b in zip(first, again):
    if isinstance(a, np.ndarray):
      np.testing.assert_array_equal(a, b)
  first_val = set(decode_index(first.val_images))
  assert first_val != set(decode_index(other.val_images))


@pytest.mark.parametrize(
    "fraction,n_val", [(0.1, 100), (0.25, 250), (0.0015, 2)]
)
def test_split_indices(fraction, n_val):
  train_idx, val_idx = ip.split_indices(1000, fraction, seed=0)
  assert len(val_idx) == n_val and len(train_idx) == 1000 - n_val
  np.testing.assert_array_equal(np.union1d(train_idx, val_idx), np.arange(1000))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_bad_val_fraction(fraction):
  with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
    ip.make_noisy_dataset(indexed_dataset(), "symmetric", 0.2, 0, fraction)


def test_noise_errors_reach_the_caller():
  with pytest.raises(ValueError, match="unknown noise type"):
    ip.make_noisy_dataset(indexed_dataset(), "uniform", 0.2, 0)


# ---------------------------------------------------------------------------
# normalize
# ---------------------------------------------------------------------------


def random_images(shape, low=0):
  return np.random.default_rng(0).integers(low, 256, shape).astype(np.uint8)


@pytest.mark.parametrize(
    "name,mean,std",
    [
        ("mnist", [0.1307], [0.3081]),
        ("fashion_mnist", [0.2860], [0.3530]),
        ("food101", [0.5], [0.5]),
        ("cifar10", [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
        ("cifar100", [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
        ("cifar10_n", [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
    ],
)
def test_normalize(name, mean, std):
  channels = 3 if len(mean) == 3 or name == "food101" else 1
  images = random_images((2, 4, 4, channels))
  out = jax.jit(ip.normalize, static_argnums=1)(images, name)
  assert out.dtype == jnp.float32 and out.shape == images.shape
  expected = (images / 255.0 - np.array(mean)) / np.array(std)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_normalize_channel_mismatch():
  with pytest.raises(ValueError, match="cifar10 statistics have 3 channels"):
    ip.normalize(np.zeros((2, 4, 4, 1), np.uint8), "cifar10")


# ---------------------------------------------------------------------------
# random_crop_flip
# ---------------------------------------------------------------------------


def windows(image, pad):
  """All crops of the zero-padded image and their mirror images."""
  h, w, _ = image.shape
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  for dy in range(2 * pad + 1):
    for dx in range(2 * pad + 1):
      crop = padded[dy:dy + h, dx:dx + w]
      yield (dy, dx, False), crop
      yield (dy, dx, True), crop[:, ::-1]


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_crop_flip_is_a_window_of_the_padded_image(dtype):
  # Non-zero pixels: only the padding is black, so each window is unique.
  images = random_images((16, 8, 6, 3), low=1).astype(dtype)
  augment = jax.jit(ip.random_crop_flip, static_argnums=2)
  out = np.asarray(augment(jax.random.key(0), images, 2))
  assert out.shape == images.shape and out.dtype == images.dtype
  seen = set()
  for image, augmented in zip(images, out):
    matches = [
        k for k, crop in windows(image, 2) if np.array_equal(crop, augmented)
    ]
    assert len(matches) == 1
    seen.add(matches[0])
  # Offsets and flips vary per example.
  assert len({(dy, dx) for dy, dx, _ in seen}) > 1
  assert {flip for _, _, flip in seen} == {False, True}


def test_random_crop_flip_deterministic_per_rng():
  images = jnp.asarray(random_images((32, 32, 32, 3)))
  a = ip.random_crop_flip(jax.random.key(3), images)
  b = jax.jit(ip.random_crop_flip)(jax.random.key(3), images)
  c = ip.random_crop_flip(jax.random.key(4), images)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_random_crop_flip_without_pad_only_flips():
  images = random_images((8, 5, 5, 1))
  out = np.asarray(ip.random_crop_flip(jax.random.key(0), images, pad=0))
  for image, augmented in zip(images, out):
    assert np.array_equal(augmented, image) or np.array_equal(
        augmented, image[:, ::-1]
    )


def test_random_crop_flip_rejects_negative_pad():
  with pytest.raises(ValueError, match="pad must be non-negative"):
    ip.random_crop_flip(jax.random.key(0), jnp.zeros((1, 4, 4, 1)), pad=-1)


def test_uses_augmentation():
  assert ip.uses_augmentation("cifar10") and ip.uses_augmentation("CIFAR100")
  assert ip.uses_augmentation("cifar10_n")
  assert not ip.uses_augmentation("mnist")
  assert not ip.uses_augmentation("fashion-mnist")
  assert not ip.uses_augmentation("food101")
