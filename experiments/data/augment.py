"""On-device preprocessing, run inside the jitted training step."""

import jax
import jax.numpy as jnp

from experiments import errors
from experiments.data.specs import DatasetSpec


def normalize(images: jax.Array, spec: DatasetSpec) -> jax.Array:
  """Scales uint8 images to ``[0, 1]`` and standardizes them per channel.

  Uses the dataset's training-set statistics (0.5/0.5 for datasets without
  known statistics). The reference code feeds F-MNIST without this
  standardization; we standardize every dataset alike, which changes the
  scale of the first layer's inputs, not what can be learned.

  Args:
    images: ``(..., c)`` uint8 (or float in ``[0, 255]``) images.
    spec: the dataset's spec, holding the statistics.

  Returns:
    float32 images of the same shape.

  Raises:
    ValueError: when the statistics have a different channel count.
  """
  if len(spec.mean) > 1 and images.shape[-1] != len(spec.mean):
    raise errors.UserError(
        f"{spec.name} statistics have {len(spec.mean)} channels, images have"
        f" shape {images.shape}."
    )
  x = jnp.asarray(images, jnp.float32) / 255.0
  mean = jnp.asarray(spec.mean, jnp.float32)
  return (x - mean) / jnp.asarray(spec.std, jnp.float32)


def random_crop_flip(
    rng: jax.Array, images: jax.Array, pad: int = 4
) -> jax.Array:
  """Per-example random crop after zero padding, and random horizontal flip.

  The CIFAR augmentation of the paper (torchvision ``RandomCrop(32,
  padding=4)`` + ``RandomHorizontalFlip``), in JAX so it runs inside the
  jitted training step. Apply it before :func:`normalize`: the padding is
  then black, as in torchvision.

  Args:
    rng: PRNG key.
    images: ``(b, h, w, c)`` batch, any dtype.
    pad: zero padding on each side; crop offsets range over ``[0, 2 * pad]``.

  Returns:
    Augmented batch with the shape and dtype of ``images``.
  """
  if pad < 0:
    raise errors.UserError(f"pad must be non-negative, got {pad}.")
  batch, height, width, channels = images.shape
  crop_rng, flip_rng = jax.random.split(rng)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(crop_rng, (batch, 2), 0, 2 * pad + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(
        image, (offset[0], offset[1], 0), (height, width, channels)
    )

  cropped = jax.vmap(crop)(padded, offsets)
  flip = jax.random.bernoulli(flip_rng, 0.5, (batch, 1, 1, 1))
  return jnp.where(flip, cropped[:, :, ::-1, :], cropped)
