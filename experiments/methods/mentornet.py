"""MentorNet-PD (Jiang et al., ICML 2018): a pre-defined curriculum by loss.

The student network learns, in every batch, the per-example cross-entropy
weighted by the mentor's v in [0, 1]; the mentor never sees the noise rate.
Every part below is google/mentornet's (code/ paths, commit 76d6be2):

* Progress is the percentage of training steps done, floor(100 step /
  total steps) in 0..99 (cifar_train_mentornet.py L197-198).
* lambda, the loss threshold: a moving average, initialized at 0, of the
  batch's ``loss_percentile``-th loss percentile, updated with the current
  batch before it is used, avg <- decay avg + (1 - decay) percentile
  (utils.py L201-202, L219-225), decay 0.5 (cifar_train_mentornet.py L91).
  The PD commands intend the 75th percentile (commands/
  train_studentnet_resnet.sh L304-399, noise 0.2 and 0.4), through a
  misspelt flag (``--loss_p_precentile``) that TF1 ignores, so those runs
  used the default 0.7 (cifar_train_mentornet.py L80); we take the
  intended 0.75 (``loss_percentile``).
* v* of the PD mentor (training_mentornet/models.py L166-195) on
  lossdiff = loss - lambda: 1 while progress <= 18 (L193-194); self-paced,
  v = [lossdiff <= 0], up to progress 89 (L69-88); SPCL-linear,
  v = clip(1 - lossdiff / gamma, 0, 1) with gamma = 1, from 90 on
  (L140-163, L187-188).
* Example dropout: at each progress a rate r; a uniformly random
  int(B (1 - r)) examples of the batch keep their v, the others get 0
  (utils.py L243-245, L279-292). The PD commands' schedule
  "0.5,17,0.05,83": r = 0.5 for progress 0-16, 0.05 for 17-99
  (utils.py L61-86 parse the format).
* The student's loss is mean(v * loss) over the batch, divided by B, not
  by sum(v) (cifar_train_mentornet.py L218-220); its weight decay is
  scaled by sum(v) / B (L228); v is a constant of the gradient (it comes
  out of a py_func, utils.py L243).

Deviation: the official student is weighted by a bidirectional-LSTM mentor
trained offline to reproduce v* (utils.py L89-160; the trained weights are
not in the repository, README L49-56); we evaluate v* itself, the function
that network was fitted to. The student's optimizer is the protocol's SGD
(momentum, the protocol's weight decay scaled as above), for the same
footing as CE and CDR (the official: momentum 0.9, lr 0.1 with steps,
cifar_train_mentornet.py L238-251).

References:
  Jiang, Zhou, Leung, Li, Fei-Fei. "MentorNet: Learning Data-Driven
  Curriculum for Very Deep Neural Networks on Corrupted Labels". ICML 2018.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments import errors
from experiments import schema
from experiments.methods import losses
from experiments.methods import small_loss
from experiments.methods import supervised
from experiments.methods.base import Batch
from experiments.methods.base import Context
from experiments.methods.base import Method
from experiments.methods.base import NetworkState
from experiments.methods.base import StepInfo

DESCRIPTION = "MentorNet-PD: v* of a moving loss percentile, example dropout"

# The dropout's random stream of the run's seed (steps.INIT_STREAM is 0).
_DROPOUT_STREAM = 102
_PROGRESS_STEPS = 100


# google/mentornet's PD settings (see the module docstring).
ARGS = {
    # The batch loss percentile of lambda: the PD commands' intended 0.75
    # (train_studentnet_resnet.sh L304-399).
    "loss_percentile": schema.Real(0.75, 0.0, 1.0, low_open=True),
    # lambda's moving-average decay (cifar_train_mentornet.py L91).
    "moving_average_decay": schema.Real(0.5, 0.0, 1.0, high_open=True),
    # v = 1 up to this progress (models.py L193-194), self-paced after.
    "burn_in_progress": schema.Int(18, 0, _PROGRESS_STEPS - 1),
    # SPCL-linear from this progress (models.py L187-188), gamma 1 (L154-156).
    "spcl_progress": schema.Int(90, 1, _PROGRESS_STEPS),
    "spcl_gamma": schema.Real(1.0, 0.0, low_open=True),
    # "rate,percent,rate,percent,...", percents summing to 100
    # (utils.py L61-86; the PD commands' value).
    "example_dropout_rates": schema.Str("0.5,17,0.05,83"),
}


def default_args() -> ml_collections.ConfigDict:
  return schema.defaults(ARGS)


def dropout_schedule(text: str) -> np.ndarray:
  """The (100,) per-progress dropout rates of "rate,percent,..." text."""
  try:
    values = [float(v) for v in text.split(",")]
  except ValueError:
    values = []
  if not values or len(values) % 2:
    raise errors.UserError(
        "method_args example_dropout_rates must be 'rate,percent,...' pairs,"
        f" got {text!r}."
    )
  rates, spans = values[0::2], values[1::2]
  if any(not 0.0 <= r < 1.0 for r in rates) or any(
      s < 0 or s != int(s) for s in spans
  ) or sum(spans) != _PROGRESS_STEPS:
    raise errors.UserError(
        "method_args example_dropout_rates needs rates in [0, 1) and whole"
        f" percents summing to 100, got {text!r}."
    )
  return np.repeat(np.asarray(rates, np.float32), np.asarray(spans, int))


def check_args(args: ml_collections.ConfigDict) -> None:
  """Raises UserError for a curriculum out of order or a bad dropout text."""
  if args.burn_in_progress >= args.spcl_progress:
    raise errors.UserError(
        "method_args need burn_in_progress < spcl_progress, got"
        f" {args.burn_in_progress} and {args.spcl_progress}."
    )
  dropout_schedule(args.example_dropout_rates)


def progress(step: jax.Array, total_steps: int) -> jax.Array:
  """floor(100 step / total steps), in 0..99 (int32; exact below 2^31 / 100
  steps)."""
  return jnp.minimum((step * _PROGRESS_STEPS) // total_steps, _PROGRESS_STEPS - 1)


def mentor_weights(
    loss: jax.Array,
    threshold: jax.Array,
    at: jax.Array,
    args: ml_collections.ConfigDict,
) -> jax.Array:
  """v*(loss - lambda, progress) of the PD mentor, before example dropout."""
  diff = loss - threshold
  self_paced = (diff <= 0).astype(loss.dtype)
  spcl = jnp.clip(1.0 - diff / args.spcl_gamma, 0.0, 1.0)
  return jnp.where(
      at <= args.burn_in_progress,
      jnp.ones_like(loss),
      jnp.where(at < args.spcl_progress, self_paced, spcl),
  )


def example_dropout(key: jax.Array, weights: jax.Array, rate: jax.Array):
  """Keeps the weights of a uniformly random int(B (1 - rate)) examples."""
  size = weights.shape[0]
  keep = jnp.floor(size * (1.0 - rate)).astype(jnp.int32)
  rank = jnp.argsort(jax.random.permutation(key, size))
  return jnp.where(rank < keep, weights, 0.0)


class MentorNetState(NamedTuple):
  """The student and its optimizer, and the moving loss threshold lambda."""

  model: supervised.SupervisedState
  loss_threshold: jax.Array  # float32 scalar.


def make(ctx: Context) -> Method:
  args = ctx.args
  network = ctx.network
  total_steps = ctx.config.num_epochs * ctx.steps_per_epoch
  rates = jnp.asarray(dropout_schedule(args.example_dropout_rates))
  tx = optax.sgd(ctx.learning_rate, ctx.config.momentum)
  weight_decay = ctx.config.weight_decay
  dropout_key = jax.random.fold_in(
      jax.random.key(ctx.config.seed), _DROPOUT_STREAM
  )
  decay = args.moving_average_decay

  def init(key: jax.Array) -> MentorNetState:
    net = network.init(key)
    model = supervised.SupervisedState(net, tx.init(net.params))
    return MentorNetState(model, jnp.zeros([], jnp.float32))

  def train_step(state: MentorNetState, batch: Batch, info: StepInfo):
    learner = state.model
    fwd = small_loss.forward(network, learner, batch, on_probabilities=False)
    loss = jax.lax.stop_gradient(fwd.loss)
    # tf.contrib.distributions.percentile's default interpolation.
    percentile = jnp.percentile(
        loss, 100.0 * args.loss_percentile, method="nearest"
    )
    threshold = decay * state.loss_threshold + (1.0 - decay) * percentile
    at = progress(info.step, total_steps)
    weights = mentor_weights(loss, threshold, at, args)
    weights = example_dropout(
        jax.random.fold_in(dropout_key, info.step), weights, rates[at]
    )
    size = weights.shape[0]
    (grads,) = fwd.pullback(weights / size)
    params = learner.net.params
    scale = weight_decay * jnp.sum(weights) / size
    grads = jax.tree.map(lambda g, p: g + scale * p, grads, params)
    updates, opt_state = tx.update(grads, learner.opt_state, params)
    model = supervised.SupervisedState(
        NetworkState(optax.apply_updates(params, updates), fwd.batch_stats),
        opt_state,
    )
    metrics = {
        "train_loss": jnp.mean(weights * fwd.loss),
        "train_running_acc": losses.accuracy(fwd.logits, batch.labels),
        "loss_threshold": threshold,
        "mentor_weight": jnp.mean(weights),
        "selected": weights > 0,
    }
    return MentorNetState(model, threshold), metrics

  def predict(state: MentorNetState, images: jax.Array) -> jax.Array:
    net = state.model.net
    return network.apply(net.params, net.batch_stats, images, train=False)[0]

  def report(state: MentorNetState) -> dict:
    return {"loss_threshold": float(state.loss_threshold)}

  return Method(init=init, train_step=train_step, predict=predict, report=report)
