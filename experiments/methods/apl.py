"""APL (Ma et al., ICML 2020): the active-passive loss NCE + RCE.

alpha * NCE + beta * RCE, both batch means:

* NCE (normalized CE, "active"): log p_y / sum_k log p_k, in [0, 1]; over
  all C candidate labels it sums to 1, so it is robust to symmetric noise but
  underfits alone.
* RCE (reverse CE, "passive"): -sum_k p_k log q_k with the one-hot target q
  clipped to [1e-4, 1], i.e. -A (sum of p over the wrong classes) with
  A = ln(1e-4) ~ -9.21. The paper writes "A = log 0 := -4", the base-10
  logarithm of the same clip; the official code takes the natural log
  (loss.py lines 52-56), and so do we. Probabilities are clipped to
  [1e-7, 1] first (loss.py line 53), so RCE is in
  [-A (C - 1) 1e-7, -A (1 + (C - 1) 1e-7)]; without that clip it is in
  [0, -A] and sums to -A (C - 1) over the C candidate labels.

alpha and beta are the official per-dataset values unless set
(``--config.method_args.apl.alpha=...``). MNIST and Fashion-MNIST both use the
official MNIST config (there is no Fashion-MNIST config); datasets without an
official config (Food-101) must set both.

Deviations: the official runs use SGD with a cosine schedule, batch 128 and
their own lr / weight decay (CIFAR-10 0.01 / 1e-4; CIFAR-100 0.1 / 1e-5;
MNIST 0.01 / 1e-2 with Nesterov). We keep the protocol's SGD, lr schedule and
batch size for a fair comparison with CDR; lr, weight decay and batch size
can be set through the protocol's fields (--config.learning_rate, ...), the
cosine schedule and Nesterov are not offered. The official gradient-norm clip
(torch clip_grad_norm_ at grad_bound 5, trainer.py line 44) is kept, applied
to the loss gradient before the weight decay as torch does.

References:
  Ma, Huang, Wang, Romano, Erfani, Bailey. "Normalized Loss Functions for Deep
  Learning with Noisy Labels". ICML 2020.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict
import optax

from experiments import errors
from experiments import schema
from experiments.data import specs
from experiments.methods import supervised
from experiments.methods.base import Context
from experiments.methods.base import Method

DESCRIPTION = "active-passive loss alpha*NCE + beta*RCE, clipped SGD"

# RCE's clip of the one-hot target (loss.py line 55) and of the predicted
# probabilities (loss.py line 53), HanxunH/Active-Passive-Losses.
LABEL_FLOOR = 1e-4
PROB_FLOOR = 1e-7
LOG_ZERO = math.log(LABEL_FLOOR)  # The paper's A.

# (alpha, beta) of criterion NCEandRCE in HanxunH/Active-Passive-Losses:
# configs/mnist/{sym,asym}/nce+rce.yaml lines 33-34; configs/cifar10/
# {sym,asym}/nce+rce.yaml lines 32-33; configs/cifar100/{sym,asym}/
# nce+rce.yaml lines 32-33. Fashion-MNIST takes the MNIST config (ours).
OFFICIAL_ALPHA_BETA = {
    "mnist": (1.0, 10.0),
    "fashion_mnist": (1.0, 10.0),
    "cifar10": (1.0, 1.0),
    "cifar10_n": (1.0, 1.0),
    "cifar100": (10.0, 0.1),
    "cifar100_n": (10.0, 0.1),
}


# alpha, beta (None = the dataset's official value), the gradient clip.
ARGS = {
    "alpha": schema.Real(None, 0.0, optional=True),
    "beta": schema.Real(None, 0.0, optional=True),
    # grad_bound: 5.0, line 2 of every config in
    # HanxunH/Active-Passive-Losses/configs; used in trainer.py line 44.
    # None: no clipping.
    "max_grad_norm": schema.Real(5.0, 0.0, low_open=True, optional=True),
}


def default_args() -> ml_collections.ConfigDict:
  return schema.defaults(ARGS)





def check_config(
    args: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> None:
  """The checks that need the protocol, before any data loads."""
  alpha_beta(args, config.dataset)


def alpha_beta(
    args: ml_collections.ConfigDict, dataset: str
) -> tuple[float, float]:
  """The configured alpha and beta; each unset one is the dataset's official."""
  name = specs.canonical_name(dataset)
  unset = args.alpha is None or args.beta is None
  if unset and name not in OFFICIAL_ALPHA_BETA:
    raise errors.UserError(
        f"APL has no official alpha/beta for dataset {name!r} (known: "
        f"{sorted(OFFICIAL_ALPHA_BETA)}); set method_args.apl.alpha and "
        "method_args.apl.beta."
    )
  official = OFFICIAL_ALPHA_BETA.get(name, (None, None))
  alpha = official[0] if args.alpha is None else args.alpha
  beta = official[1] if args.beta is None else args.beta
  return alpha, beta


def normalized_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example NCE = log p_y / sum_k log p_k, in [0, 1], shape (B,)."""
  log_p = jax.nn.log_softmax(logits)
  log_p_y = jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]
  return log_p_y / jnp.sum(log_p, axis=-1)


def reverse_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example RCE = -A * (clipped probability of the wrong classes), (B,)."""
  p = jnp.clip(jax.nn.softmax(logits), PROB_FLOOR, 1.0)
  wrong = 1.0 - jax.nn.one_hot(labels, logits.shape[-1], dtype=p.dtype)
  return -LOG_ZERO * jnp.sum(wrong * p, axis=-1)


def apl_loss(
    logits: jax.Array, labels: jax.Array, alpha: float, beta: float
) -> jax.Array:
  """alpha * mean NCE + beta * mean RCE over the batch."""
  return alpha * jnp.mean(normalized_cross_entropy(logits, labels)) + (
      beta * jnp.mean(reverse_cross_entropy(logits, labels))
  )


def optimizer(ctx: Context) -> optax.GradientTransformation:
  """The protocol's SGD, after the official gradient-norm clip (if any)."""
  sgd = supervised.sgd_weight_decay(ctx)
  if ctx.args.max_grad_norm is None:
    return sgd
  return optax.chain(optax.clip_by_global_norm(ctx.args.max_grad_norm), sgd)


def make(ctx: Context) -> Method:
  alpha, beta = alpha_beta(ctx.args, ctx.config.dataset)
  return supervised.supervised(
      ctx, optimizer(ctx),
      lambda logits, labels, indices: apl_loss(logits, labels, alpha, beta),
  )
