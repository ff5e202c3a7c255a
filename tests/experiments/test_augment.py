"""Tests for experiments.data.augment: normalization, crop + flip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.data import augment
from experiments.data import specs

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
        ("food101", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ("cifar10", [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
        ("cifar100", [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
        ("cifar10_n", [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
        ("cifar100_n", [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
    ],
)
def test_normalize(name, mean, std):
  channels = 3 if len(mean) == 3 or name == "food101" else 1
  images = random_images((2, 4, 4, channels))
  # The spec is hashable: it can be a static argument of a jitted step.
  normalize = jax.jit(augment.normalize, static_argnums=1)
  out = normalize(images, specs.get_spec(name))
  assert out.dtype == jnp.float32 and out.shape == images.shape
  expected = (images / 255.0 - np.array(mean)) / np.array(std)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_normalize_channel_mismatch():
  with pytest.raises(ValueError, match="cifar10 statistics have 3 channels"):
    augment.normalize(
        np.zeros((2, 4, 4, 1), np.uint8), specs.get_spec("cifar10")
    )


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
  crop_flip = jax.jit(augment.random_crop_flip, static_argnums=2)
  out = np.asarray(crop_flip(jax.random.key(0), images, 2))
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
  a = augment.random_crop_flip(jax.random.key(3), images)
  b = jax.jit(augment.random_crop_flip)(jax.random.key(3), images)
  c = augment.random_crop_flip(jax.random.key(4), images)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_random_crop_flip_without_pad_only_flips():
  images = random_images((8, 5, 5, 1))
  out = np.asarray(augment.random_crop_flip(jax.random.key(0), images, pad=0))
  for image, augmented in zip(images, out):
    assert np.array_equal(augmented, image) or np.array_equal(
        augmented, image[:, ::-1]
    )


def test_random_crop_flip_rejects_negative_pad():
  with pytest.raises(ValueError, match="pad must be non-negative"):
    augment.random_crop_flip(jax.random.key(0), jnp.zeros((1, 4, 4, 1)), pad=-1)
