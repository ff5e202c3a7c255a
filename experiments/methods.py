"""Learning-with-noisy-labels methods, looked up by name.

A `Method` says what loss a network minimizes and how its gradients become
parameter updates. The training loop (`train.py`) only talks to this
interface, so a baseline of the paper's tables is one small entry here:

* loss-only methods (GCE, APL, DMI, Forward with a fixed transition matrix)
  provide `loss`; it gets the logits, the noisy labels and the dataset indices
  of the batch, so per-example losses and per-sample bookkeeping
  (MentorNet-style weights, sample selection) have what they need;
* optimizer-only methods (CDR) provide `optimizer`;
* `optimizer_metrics` exposes diagnostics of the optimizer state (CDR's
  fraction of critical parameters) for the per-epoch log.

Methods that train two networks (Co-teaching, Co-teaching+), update labels
(Joint) or need a warm-up model (Forward, T-Revision) will extend this
dataclass with the state and hooks they need.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

import optax_cdr

# (logits (B, C), noisy labels (B,), dataset indices (B,)) -> scalar loss.
LossFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
# (config, learning-rate schedule in steps) -> optimizer.
OptimizerFn = Callable[
    [ml_collections.ConfigDict, optax.Schedule], optax.GradientTransformation
]
MetricsFn = Callable[[optax.OptState], dict[str, jax.Array]]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels, shape (B,)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def mean_cross_entropy(
    logits: jax.Array, labels: jax.Array, indices: jax.Array
) -> jax.Array:
  """Mean softmax cross-entropy over the batch (torch's CrossEntropyLoss)."""
  del indices
  return jnp.mean(cross_entropy(logits, labels))


def _no_metrics(opt_state: optax.OptState) -> dict[str, jax.Array]:
  del opt_state
  return {}


@dataclasses.dataclass(frozen=True)
class Method:
  """A training method.

  Attributes:
    name: registry key, the config's `method`.
    description: one line for `--help` and the results table.
    optimizer: builds the optimizer from the config and the learning-rate
      schedule.
    loss: the training objective of one batch.
    optimizer_metrics: scalars read from the optimizer state after each step;
      the training loop logs their mean over the epoch.
  """

  name: str
  description: str
  optimizer: OptimizerFn
  loss: LossFn = mean_cross_entropy
  optimizer_metrics: MetricsFn = _no_metrics


def cdr_tau(config: ml_collections.ConfigDict) -> float:
  """CDR's non-critical fraction: `cdr_tau`, or the true noise rate if unset.

  The paper sets tau to the noise rate (an oracle); `cdr_tau` overrides it.
  """
  return config.noise_rate if config.cdr_tau is None else config.cdr_tau


def _sgd_weight_decay(config, learning_rate):
  # Decay added to the gradient before momentum: torch's SGD(weight_decay=...).
  return optax.chain(
      optax.add_decayed_weights(config.weight_decay),
      optax.sgd(learning_rate, config.momentum),
  )


def _cdr_paper(config, learning_rate):
  # The paper's equations: critical (1 - tau) * grad, lam * sign(w) on all
  # ranked kernels; no other weight decay.
  return optax.chain(
      optax_cdr.cdr(cdr_tau(config), config.cdr_lam, regularizer="l1"),
      optax.sgd(learning_rate, config.momentum),
  )


def _cdr_ref(config, learning_rate):
  # The reference code: critical (1 - tau) * grad, the rest 0, then torch's
  # L2 weight decay on every parameter, inside momentum SGD.
  return optax.chain(
      optax_cdr.cdr(cdr_tau(config), 0.0),
      optax.add_decayed_weights(config.weight_decay),
      optax.sgd(learning_rate, config.momentum),
  )


def _critical_fraction(opt_state: optax.OptState) -> dict[str, jax.Array]:
  """Fraction of the ranked parameters that were critical in the last step."""
  num_critical = optax.tree_utils.tree_get(opt_state, "num_critical")
  num_ranked = optax.tree_utils.tree_get(opt_state, "num_ranked")
  return {
      "critical_fraction": num_critical.astype(jnp.float32)
      / jnp.maximum(num_ranked, 1).astype(jnp.float32)
  }


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "ce",
            "cross-entropy, SGD + momentum + weight decay",
            _sgd_weight_decay,
        ),
        Method(
            "cdr_ref",
            "CDR as the reference code: critical grads x(1-tau), L2 decay",
            _cdr_ref,
            optimizer_metrics=_critical_fraction,
        ),
        Method(
            "cdr_paper",
            "CDR as the paper: critical grads x(1-tau), lam*sign(w) shrinkage",
            _cdr_paper,
            optimizer_metrics=_critical_fraction,
        ),
    )
}


def get_method(name: str) -> Method:
  """Returns the registered method `name`; raises ValueError if unknown."""
  try:
    return METHODS[name]
  except KeyError:
    raise ValueError(
        f"Unknown method {name!r}; expected one of {tuple(METHODS)}."
    ) from None
