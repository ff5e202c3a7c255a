"""Tests for experiments.data.protocol: noise, subset and 90/10 split."""

import numpy as np
import pytest

from experiments import data
from experiments.data import noise
from experiments.data import protocol


def indexed_dataset(n=1000, num_classes=10, clean_labels=None, labels=None):
  """Images that spell their own index, so splits can be traced back."""
  index = np.arange(n)
  images = np.stack([index // 256, index % 256], axis=-1).astype(np.uint8)
  images = images.reshape(n, 1, 2, 1)
  if labels is None:
    labels = (index * 7 % num_classes).astype(np.int32)
  train = data.Split(images, labels, clean_labels)
  test = data.Split(images[:50], labels[:50])
  return data.Dataset("mnist", num_classes, train, test)


def decode_index(images):
  return images[:, 0, 0, 0].astype(int) * 256 + images[:, 0, 1, 0]


@pytest.mark.parametrize(
    "noise_type", ["none", "symmetric", "pairflip", "asymmetric", "instance"]
)
def test_split_protocol(noise_type):
  ds = indexed_dataset()
  rate = 0.0 if noise_type == "none" else 0.4
  nd = data.make_noisy_dataset(ds, noise_type, rate, seed=5)
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
  first = data.make_noisy_dataset(ds, "symmetric", 0.2, seed=3)
  again = data.make_noisy_dataset(ds, "symmetric", 0.2, seed=3)
  other = data.make_noisy_dataset(ds, "symmetric", 0.2, seed=4)
  for a, b in zip(first, again):
    if isinstance(a, np.ndarray):
      np.testing.assert_array_equal(a, b)
  first_val = set(decode_index(first.val_images))
  assert first_val != set(decode_index(other.val_images))


@pytest.mark.parametrize(
    "fraction,n_val", [(0.1, 100), (0.25, 250), (0.0015, 2)]
)
def test_split_indices(fraction, n_val):
  train_idx, val_idx = protocol.split_indices(1000, fraction, seed=0)
  assert len(val_idx) == n_val and len(train_idx) == 1000 - n_val
  np.testing.assert_array_equal(np.union1d(train_idx, val_idx), np.arange(1000))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_bad_val_fraction(fraction):
  with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
    data.make_noisy_dataset(indexed_dataset(), "symmetric", 0.2, 0, fraction)


def test_noise_errors_reach_the_caller():
  with pytest.raises(ValueError, match="unknown noise type"):
    data.make_noisy_dataset(indexed_dataset(), "uniform", 0.2, 0)


# ---------------------------------------------------------------------------
# Class-balanced subset (num_train_examples)
# ---------------------------------------------------------------------------


def skewed_labels(n=2000, seed=0):
  """Labels whose class k is drawn with probability (k + 1) / 55."""
  rng = np.random.default_rng(seed)
  return rng.choice(10, n, p=np.arange(1, 11) / 55).astype(np.int32)


@pytest.mark.parametrize("size", [10, 97, 250])
def test_balanced_subset_size_and_balance(size):
  labels = skewed_labels()
  indices = protocol.balanced_subset(labels, size, 10, seed=0)
  assert len(indices) == size
  np.testing.assert_array_equal(indices, np.unique(indices))  # Sorted, unique.
  counts = np.bincount(labels[indices], minlength=10)
  assert counts.sum() == size and counts.max() - counts.min() <= 1


def test_balanced_subset_is_seeded():
  labels = skewed_labels()
  first = protocol.balanced_subset(labels, 97, 10, seed=3)
  again = protocol.balanced_subset(labels, 97, 10, seed=3)
  other = protocol.balanced_subset(labels, 97, 10, seed=4)
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)


@pytest.mark.parametrize("size", [97, 250])
def test_num_train_examples_subset_then_noise_then_split(size):
  ds = indexed_dataset(2000, labels=skewed_labels())
  nd = data.make_noisy_dataset(
      ds, "symmetric", 0.4, seed=5, num_train_examples=size
  )
  train_idx = decode_index(nd.train_images)
  val_idx = decode_index(nd.val_images)
  assert len(val_idx) == round(0.1 * size)
  assert len(train_idx) == size - round(0.1 * size)
  assert not set(train_idx) & set(val_idx)
  subset = protocol.balanced_subset(ds.train.labels, size, 10, seed=5)
  np.testing.assert_array_equal(
      np.sort(np.concatenate([train_idx, val_idx])), subset
  )
  clean = np.concatenate([nd.train_clean_labels, nd.val_clean_labels])
  counts = np.bincount(clean, minlength=10)
  assert counts.max() - counts.min() <= 1
  # The noise is drawn on the subset, which is then split.
  whole = noise.add_noise(
      "symmetric", labels=ds.train.labels[subset], rate=0.4, num_classes=10,
      seed=5,
  )
  split_train, split_val = protocol.split_indices(size, 0.1, seed=5)
  np.testing.assert_array_equal(train_idx, subset[split_train])
  np.testing.assert_array_equal(nd.train_labels, whole.labels[split_train])
  np.testing.assert_array_equal(nd.val_labels, whole.labels[split_val])
  assert nd.realized_rate == whole.realized_rate
  # The test set is untouched.
  np.testing.assert_array_equal(nd.test_images, ds.test.images)


def test_num_train_examples_is_seeded():
  ds = indexed_dataset(2000, labels=skewed_labels())
  first = data.make_noisy_dataset(ds, "pairflip", 0.2, 3, num_train_examples=97)
  again = data.make_noisy_dataset(ds, "pairflip", 0.2, 3, num_train_examples=97)
  other = data.make_noisy_dataset(ds, "pairflip", 0.2, 4, num_train_examples=97)
  for a, b in zip(first, again):
    if isinstance(a, np.ndarray):
      np.testing.assert_array_equal(a, b)
  chosen = lambda nd: set(decode_index(nd.train_images)) | set(
      decode_index(nd.val_images)
  )
  assert chosen(first) != chosen(other)


def test_num_train_examples_of_the_whole_balanced_set_changes_nothing():
  ds = indexed_dataset()  # 100 examples per class.
  whole = data.make_noisy_dataset(ds, "instance", 0.4, seed=2)
  subset = data.make_noisy_dataset(
      ds, "instance", 0.4, seed=2, num_train_examples=1000
  )
  for a, b in zip(whole, subset):
    if isinstance(a, np.ndarray):
      np.testing.assert_array_equal(a, b)
    else:
      assert a == b


def test_num_train_examples_balances_the_ground_truth():
  clean = skewed_labels()
  human = ((clean + (np.arange(2000) % 3 == 0)) % 10).astype(np.int32)
  ds = indexed_dataset(2000, clean_labels=clean, labels=human)
  nd = data.make_noisy_dataset(ds, "none", 0.0, seed=0, num_train_examples=250)
  clean_subset = np.concatenate([nd.train_clean_labels, nd.val_clean_labels])
  np.testing.assert_array_equal(np.bincount(clean_subset), [25] * 10)
  labels_subset = np.concatenate([nd.train_labels, nd.val_labels])
  assert nd.realized_rate == pytest.approx(
      np.mean(labels_subset != clean_subset)
  )
  assert 0.2 < nd.realized_rate < 0.5  # Every third human label is off.


@pytest.mark.parametrize("size", [9, 0, 2001])
def test_num_train_examples_out_of_range(size):
  ds = indexed_dataset(2000, labels=skewed_labels())
  expected = rf"num_train_examples must be in \[10, 2000\], got {size}\."
  with pytest.raises(ValueError, match=expected):
    data.make_noisy_dataset(ds, "symmetric", 0.2, 0, num_train_examples=size)


def test_num_train_examples_larger_than_a_class():
  labels = skewed_labels()
  smallest = np.bincount(labels).min()
  assert smallest == np.bincount(labels)[0]
  size = 10 * (smallest + 1)
  expected = (
      f"class 0 has {smallest} training examples, fewer than the"
      f" {smallest + 1} a balanced subset of {size} needs"
  )
  with pytest.raises(ValueError, match=expected):
    protocol.balanced_subset(labels, size, 10, seed=0)
  with pytest.raises(ValueError, match=expected):
    data.make_noisy_dataset(
        indexed_dataset(2000, labels=labels), "symmetric", 0.2, 0,
        num_train_examples=size,
    )


# ---------------------------------------------------------------------------
# Real Fashion-MNIST (Debian package dataset-fashion-mnist)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("noise_type", ["symmetric", "pairflip", "instance"])
def test_real_fashion_mnist_noise(fashion_mnist, noise_type):
  nd = data.make_noisy_dataset(fashion_mnist, noise_type, 0.4, seed=0)
  assert nd.train_images.shape == (54000, 28, 28, 1)
  assert nd.val_images.shape == (6000, 28, 28, 1)
  assert abs(nd.realized_rate - 0.4) < 0.01


def test_balanced_subset_gives_extras_only_to_classes_with_room():
  """A valid balanced subset exists for every seed: class 0 has exactly the
  base count (9), so the 5 extra examples must go to other classes."""
  labels = np.concatenate([np.zeros(9, int)] + [np.full(20, c) for c in range(1, 10)])
  for seed in range(20):
    chosen = protocol.balanced_subset(labels, 95, 10, seed)
    counts = np.bincount(labels[chosen], minlength=10)
    assert len(chosen) == 95 and counts[0] == 9 and counts.max() == 10


@pytest.mark.parametrize("num_examples, fraction", [(10, 0.01), (10, 0.99)])
def test_split_indices_rejects_an_empty_split(num_examples, fraction):
  with pytest.raises(ValueError, match="both splits must be non-empty"):
    protocol.split_indices(num_examples, fraction, seed=0)
