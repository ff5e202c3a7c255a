"""Losses shared by several methods."""

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels, shape (B,)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def mean_cross_entropy(
    logits: jax.Array, labels: jax.Array, indices: jax.Array
) -> jax.Array:
  """Mean softmax cross-entropy over the batch (torch's CrossEntropyLoss)."""
  del indices
  return jnp.mean(cross_entropy(logits, labels))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of the batch whose prediction equals its (noisy) label."""
  return jnp.mean(jnp.argmax(logits, -1) == labels)
