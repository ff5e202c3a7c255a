"""Joint Optimization's label learning: its loss and its window of predictions.

The stage-1 objective (Tanaka et al., CVPR 2018; official code
DaikiTanaka-UT/JointOptimization, first_step_train.py L137-153) and the
host-side update of the soft labels from the last epochs' predictions
(L103-112). ``joint.py`` wires them into a two-phase method.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def joint_loss(
    logits: jax.Array, targets: jax.Array, prior: jax.Array,
    alpha: float, beta: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """L_c + alpha * L_p + beta * L_e of one batch, and the three terms.

  Args:
    logits: (B, C).
    targets: (B, C) soft labels (rows sum to 1).
    prior: (C,) class prior p.
    alpha: weight of the prior term KL(p || mean_i s_i).
    beta: weight of the entropy term of the predictions.
  """
  log_probs = jax.nn.log_softmax(logits)
  probs = jnp.exp(log_probs)
  label_term = -jnp.mean(jnp.sum(targets * log_probs, axis=-1))
  mean_probs = jnp.mean(probs, axis=0)
  prior_term = jnp.sum(prior * (jnp.log(prior) - jnp.log(mean_probs)))
  entropy_term = -jnp.mean(jnp.sum(probs * log_probs, axis=-1))
  total = label_term + alpha * prior_term + beta * entropy_term
  return total, {
      "label_loss": label_term, "prior_loss": prior_term,
      "entropy_loss": entropy_term,
  }


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean over the batch of -sum_j target_j log softmax(logits)_j."""
  return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1))


class LabelWindow(NamedTuple):
  """The labels after an epoch's update (host-side numpy)."""

  recent_predictions: np.ndarray  # (num_recent, N, C) ring buffer.
  num_recorded: int  # Epochs in the buffer, at most num_recent.
  soft_labels: np.ndarray  # (N, C).


def update_window(
    recent_predictions: np.ndarray,
    num_recorded: int,
    epoch_predictions: np.ndarray,
    noisy_labels: np.ndarray,
    epoch: int,
) -> LabelWindow:
  """Adds 1-based `epoch`'s predictions; soft labels = the window's mean.

  Rows of `epoch_predictions` that are all zero (examples no step has visited)
  enter as the one-hot noisy label.
  """
  num_recent, _, num_classes = recent_predictions.shape
  predictions = np.array(epoch_predictions, np.float32)
  unvisited = ~predictions.any(axis=1)
  predictions[unvisited] = np.eye(num_classes, dtype=np.float32)[
      noisy_labels[unvisited]
  ]
  recent = np.array(recent_predictions, np.float32)
  recent[(epoch - 1) % num_recent] = predictions
  num_recorded = min(num_recorded + 1, num_recent)
  # The filled slots are the first num_recorded (the ring fills in order).
  soft = recent[:num_recorded].mean(axis=0)
  return LabelWindow(recent, num_recorded, soft)
