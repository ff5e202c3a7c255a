"""Tests for experiments.data.protocol: noise, subset and 90/10 split."""

import numpy as np
import pytest

from experiments import data
from experiments.data import noise
from experiments.data import protocol

def indexed_dataset(n=1000, num_classes=10, clean_labels=None):
  """Images that spell their own index, so splits can be traced back."""
  index = np.arange(n)
  images = np.stack([index // 256, index % 256], axis=-1).astype(np.uint8)
  images = images.reshape(n, 1, 2, 1)
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
# Real Fashion-MNIST (Debian package dataset-fashion-mnist)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("noise_type", ["symmetric", "pairflip", "instance"])
def test_real_fashion_mnist_noise(fashion_mnist, noise_type):
  nd = data.make_noisy_dataset(fashion_mnist, noise_type, 0.4, seed=0)
  assert nd.train_images.shape == (54000, 28, 28, 1)
  assert nd.val_images.shape == (6000, 28, 28, 1)
  assert abs(nd.realized_rate - 0.4) < 0.01
