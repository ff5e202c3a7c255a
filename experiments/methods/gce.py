"""GCE (Zhang & Sabuncu, NeurIPS 2018): the generalized cross-entropy L_q.

L_q(p, y) = (1 - p_y^q) / q interpolates between CE (the limit q -> 0) and
MAE (q = 1, up to a factor): it keeps CE's fast learning of clean examples
and MAE's bounded loss on wrong labels. It is computed as
-expm1(q log p_y) / q, which is exact, stable in float32 for small q, and
has a finite gradient where softmax underflows (p_y^q would not).

The truncated variant (``truncated=True``) trains on
w_i (L_q(p_i, y_i) - L_q(k)), where the per-example weight w_i (1 at the
start) is re-set every ``prune_every`` epochs from ``prune_start_epoch`` on
to 1 if L_q(p_i, y_i) < L_q(k) (i.e. p_y > k) and 0 otherwise: examples the
model finds too unlikely stop contributing. The step reports the kept
examples as ``selected`` (the loop logs their fraction and label precision)
and ``report`` lists the ids of the examples pruned in the last epoch.
There is no official code; the schedule follows the re-implementation
AlanChou/Truncated-Loss.

Deviations:
* The optimizer is the protocol's SGD (lr 0.01, momentum 0.9, weight decay
  1e-3, its step decays), as for CE; the paper's own setting is not public
  as code. The APL repository's GCE configs clip the gradient norm at 5
  (HanxunH/Active-Passive-Losses configs/*/gce.yaml line 2); GCE's paper
  does not, and neither do we.
* The truncated weights are computed from the current model. The
  re-implementation reloads its best-test-accuracy checkpoint for this
  (main.py lines 176-186) and the paper uses the best-validation model; the
  method interface offers no access to the best-validation state.

References:
  Zhang, Sabuncu. "Generalized Cross Entropy Loss for Training Deep Neural
  Networks with Noisy Labels". NeurIPS 2018.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments import errors
from experiments import schema
from experiments.methods import supervised
from experiments.methods.base import Batch
from experiments.methods.base import Context
from experiments.methods.base import EpochView
from experiments.methods.base import Method
from experiments.methods.base import StepInfo

DESCRIPTION = "generalized cross-entropy L_q (optionally truncated), SGD"


# q, and the truncated variant's switch, threshold and pruning schedule.
ARGS = {
    # Zhang & Sabuncu, Section 4 (experiments); also q: 0.7 in
    # HanxunH/Active-Passive-Losses configs/cifar10/sym/gce.yaml line 32.
    "q": schema.Real(0.7, 0.0, 1.0, low_open=True),
    # Plain L_q by default; truncated L_q is the paper's second variant.
    "truncated": schema.Bool(False),
    # AlanChou/Truncated-Loss TruncatedLoss.py line 9 (k=0.5), the paper's
    # Section 4 setting.
    "k": schema.Real(0.5, 0.0, 1.0, low_open=True, high_open=True),
    # The first (1-based) epoch trained on pruned weights: --start_prune 40
    # for CIFAR-10 in AlanChou/Truncated-Loss README.md (80 for CIFAR-100);
    # the update runs when (epoch + 1) >= start_prune, main.py line 176.
    "prune_start_epoch": schema.Int(40, 1),
    # Weights are re-set every 10 epochs: main.py line 176, (epoch+1) % 10.
    "prune_every": schema.Int(10, 1),
}


def default_args() -> ml_collections.ConfigDict:
  return schema.defaults(ARGS)





def check_config(
    args: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> None:
  """The checks that need the protocol, before any data loads."""
  if args.truncated and args.prune_start_epoch > config.num_epochs:
    raise errors.UserError(
        f"method_args prune_start_epoch={args.prune_start_epoch} is after the "
        f"last epoch ({config.num_epochs}): the truncated loss would never "
        "prune; lower it (the official 40 is for 120 epochs)."
    )


def lq(log_p: jax.Array, q: float) -> jax.Array:
  """(1 - p^q) / q of the log-probability `log_p`, elementwise."""
  return -jnp.expm1(q * log_p) / q


def gce_per_example(
    logits: jax.Array, labels: jax.Array, q: float
) -> jax.Array:
  """L_q of each example's noisy label, shape (B,)."""
  log_p = jax.nn.log_softmax(logits)
  log_p_y = jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]
  return lq(log_p_y, q)


def truncated_loss(
    logits: jax.Array, labels: jax.Array, weights: jax.Array, q: float,
    k: float,
) -> jax.Array:
  """Batch mean of w (L_q - L_q(k)); the shift is a constant per example."""
  threshold = lq(jnp.log(k), q)
  return jnp.mean(weights * (gce_per_example(logits, labels, q) - threshold))


def kept_weights(
    logits: np.ndarray, labels: np.ndarray, q: float, k: float
) -> np.ndarray:
  """1.0 where L_q(p_y) < L_q(k), else 0.0 (float32, per example)."""
  loss = gce_per_example(jnp.asarray(logits), jnp.asarray(labels), q)
  return np.asarray(loss < lq(jnp.log(k), q), np.float32)


class TruncatedState(NamedTuple):
  """The network and optimizer, and one pruning weight per example."""

  inner: supervised.SupervisedState
  weights: jax.Array  # (num_train,) float32, 1 = kept.


def make(ctx: Context) -> Method:
  args = ctx.args
  tx = supervised.sgd_weight_decay(ctx)
  if not args.truncated:
    return supervised.supervised(
        ctx, tx,
        lambda logits, labels, indices: jnp.mean(
            gce_per_example(logits, labels, args.q)
        ),
    )
  return _make_truncated(ctx, tx)


def _make_truncated(ctx: Context, tx: optax.GradientTransformation) -> Method:
  args = ctx.args
  # For init and predict. The step's loss reads the state's weights, so its
  # supervised step is built inside the trace, around those weights.
  plain = supervised.supervised(ctx, tx)

  def init(key: jax.Array) -> TruncatedState:
    return TruncatedState(plain.init(key), jnp.ones(ctx.num_train, jnp.float32))

  def train_step(state: TruncatedState, batch: Batch, info: StepInfo):
    weights = state.weights[batch.indices]
    step = supervised.supervised(
        ctx, tx,
        lambda logits, labels, indices: truncated_loss(
            logits, labels, weights, args.q, args.k
        ),
    ).train_step
    inner, metrics = step(state.inner, batch, info)
    return state._replace(inner=inner), {**metrics, "selected": weights > 0}

  def end_epoch(state: TruncatedState, epoch: int, view: EpochView):
    next_epoch = epoch + 1
    if (next_epoch < args.prune_start_epoch or next_epoch % args.prune_every
        or next_epoch > ctx.config.num_epochs):
      return state
    weights = kept_weights(view.predict_train(state), view.train_labels,
                           args.q, args.k)
    return state._replace(weights=jnp.asarray(weights))

  def predict(state: TruncatedState, images: jax.Array) -> jax.Array:
    return plain.predict(state.inner, images)

  def report(state: TruncatedState) -> dict:
    return {"pruned_ids": np.flatnonzero(np.asarray(state.weights) == 0)}

  return Method(init=init, train_step=train_step, predict=predict,
                end_epoch=end_epoch, report=report)
