"""Forward correction (Patrini et al., CVPR 2017): CE on log(softmax(f) T).

The network models the clean posterior; pushed through the transition
matrix, softmax(f(x)) @ T models the noisy labels, and that is what the loss
fits: -log (softmax(f(x)) @ T)[y].

* ``transition="estimate"`` (default): T from anchor points
  (``estimation.anchor_transition``) of a CE warm-up, on the training split,
  with the 97th-percentile filter except on CIFAR-100
  (giorgiop/loss-correction experiment.py l.58-62; the same switch in
  xiaoboxia/T-Revision main.py l.52, 65, 78).
  ``"oracle"``: the true class-level T of the configured noise, no warm-up
  (Patrini's "forward" with known T, experiment.py l.143-145); instance
  noise has no class-level T.
* Procedure, as Patrini et al.'s code: a CE model is trained and its best
  validation state kept (models.py l.94-99, 132-133), T is estimated from
  it on the whole training split (experiment.py l.123-137), and a *new,
  randomly initialized* network is trained on the corrected loss
  (experiment.py l.141, 148). Here the CE warm-up is ``warmup_epochs`` of
  the run's ``num_epochs`` (default 10%, T-Revision's 20 of 200 epochs,
  main.py l.27, 58), its state of best noisy-validation accuracy is handed
  over (the loop's ``Phase.hands_over_best``; Patrini's checkpoint monitors
  the validation loss, the protocol selects by accuracy), T is estimated
  from it, and the corrected loss trains a fresh network (its own seeded
  initialization) with a fresh optimizer state under the protocol's SGD and
  learning-rate schedule for the remaining epochs: the same cost as CE.
  The reported epoch is chosen among the corrected phase's epochs; the
  warm-up's best is in ``summary.json`` under ``warmups``.
* Confident learning (cleanlab) runs on the same probabilities, a second
  estimate of tau for the report. They are in-sample: cross-fitting would
  cost one warm-up per fold, the loop's view has no held-out predictions,
  and after a short warm-up the network has not yet memorized the noisy
  labels (the early-learning regime CDR builds on), so in-sample
  probabilities are close to held-out ones.
* The loss is computed in log space, -logsumexp(log_softmax(f) + log T[:, y])
  with T floored at the smallest normal float, instead of keras's clip of
  softmax(f) to [1e-7, 1 - 1e-7] (loss.py l.23-29): with T = I it is CE.

References:
  Patrini, Rozza, Menon, Nock, Qu. "Making deep neural networks robust to
  label noise: a loss correction approach". CVPR 2017.
"""

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict
import numpy as np
import optax

from experiments import errors
from experiments import schema
from experiments.data import noise
from experiments.methods import estimation
from experiments.methods import supervised
from experiments.methods.base import Batch
from experiments.methods.base import Context
from experiments.methods.base import EpochView
from experiments.methods.base import Method
from experiments.methods.base import Phase
from experiments.methods.base import StepInfo
from experiments.methods.base import TrainStep

DESCRIPTION = "Forward: CE on log(softmax(f) T), T from a CE warm-up's anchors"
TRANSITIONS = ("estimate", "oracle")
# The corrected network's initialization: a stream of the run's seed that
# differs from the loop's (steps.INIT_STREAM = 0).
FRESH_NET_STREAM = 101


# The warm-up and anchor arguments, shared with T-Revision.
ESTIMATION_ARGS = {
    # CE warm-up epochs before the estimate; None = 10% of num_epochs (at
    # least 1): T-Revision main.py l.27 and l.58 (20 epochs of CIFAR-10's
    # 200; l.71: 15 for CIFAR-100).
    "warmup_epochs": schema.Int(None, 1, optional=True),
    # Anchor filter; None = on, except for CIFAR-100 (loss-correction
    # experiment.py l.58-62, T-Revision main.py l.52, 65, 78).
    "filter_outlier": schema.Field(None, "bool", optional=True),
    # loss-correction models.py l.442, T-Revision main.py l.29 / tools.py l.36.
    "percentile": schema.Real(97.0, 0.0, 100.0, low_open=True),
}
ARGS = {
    # "estimate" (anchor points of a CE warm-up) or "oracle" (the true T).
    "transition": schema.Str("estimate", TRANSITIONS),
    **ESTIMATION_ARGS,
}


def default_args() -> ml_collections.ConfigDict:
  return schema.defaults(ARGS)








def warmup_epochs(args: ml_collections.ConfigDict, num_epochs: int) -> int:
  """The configured warm-up, or 10% of the run (at least one epoch)."""
  epochs = args.warmup_epochs
  if epochs is None:
    epochs = max(1, round(0.1 * num_epochs))
  if epochs >= num_epochs:
    raise errors.UserError(
        f"method_args warmup_epochs={epochs} must be below num_epochs="
        f"{num_epochs}: the corrected loss needs epochs of its own."
    )
  return epochs


def check_config(
    args: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> None:
  """The checks that need the protocol, before any data loads."""
  if args.transition == "oracle":
    _check_oracle(config.noise_type)
  else:
    warmup_epochs(args, config.num_epochs)


def _check_oracle(noise_type: str) -> None:
  if noise_type == "instance":
    raise errors.UserError(
        "transition='oracle' needs a class-level transition matrix;"
        f" {noise_type!r} noise has none. Use 'estimate'."
    )


def true_transition(ctx: Context) -> np.ndarray | None:
  """The configured noise's class-level T; None for instance noise."""
  config = ctx.config
  if config.noise_type == "instance":
    return None
  return noise.transition_matrix(
      config.noise_type, config.noise_rate, ctx.num_classes, config.dataset
  )


def _estimate_from(ctx: Context, state, view: EpochView) -> estimation.Estimate:
  filter_outlier = ctx.args.filter_outlier
  if filter_outlier is None:
    filter_outlier = ctx.config.dataset != "cifar100"
  found = estimation.estimate(
      view.predict_train(state),
      view.train_labels,
      filter_outlier=filter_outlier,
      percentile=ctx.args.percentile,
  )
  return estimation.Estimate(*(jnp.asarray(x, jnp.float32) for x in found))


# The helpers below work on any method state with the fields `model` (a
# `supervised.SupervisedState`) and `estimate` (an `estimation.Estimate`).


def estimate_on_end(
    ctx: Context,
    tx: optax.GradientTransformation,
    fresh_network: Callable[[], Any] | None = None,
) -> Callable[[Any, EpochView], Any]:
  """A warm-up phase's ``on_end``: estimate T from the (handed-over) model.

  The next stage starts a fresh optimizer state, as after the official
  warm-up (T-Revision main.py l.83-84: two optimizers), and, with
  `fresh_network`, a new network (Patrini et al.'s experiment.py l.141).
  """

  def on_end(state, view: EpochView):
    estimate = _estimate_from(ctx, state, view)
    net = state.model.net if fresh_network is None else fresh_network()
    model = state.model._replace(net=net, opt_state=tx.init(net.params))
    return state._replace(model=model, estimate=estimate)

  return on_end


def step_on_model(train_step: TrainStep) -> TrainStep:
  """Lifts a step of the `model` field to a step of the whole state."""

  def step(state, batch: Batch, info: StepInfo):
    model, metrics = train_step(state.model, batch, info)
    return state._replace(model=model), metrics

  return step


def corrected_step(
    ctx: Context, tx: optax.GradientTransformation, loss: Callable[..., jax.Array]
) -> TrainStep:
  """A step on `loss(T, logits, labels, indices)` with the state's estimated T."""

  def step(state, batch: Batch, info: StepInfo):
    bound = functools.partial(loss, state.estimate.transition)
    return step_on_model(supervised.supervised(ctx, tx, bound).train_step)(
        state, batch, info
    )

  return step


def forward_cross_entropy(
    logits: jax.Array, labels: jax.Array, transition: jax.Array
) -> jax.Array:
  """Per-example -log (softmax(logits) @ T)[label], shape (B,)."""
  log_transition = jnp.log(
      jnp.maximum(transition, jnp.finfo(transition.dtype).tiny)
  )
  return -jax.nn.logsumexp(
      jax.nn.log_softmax(logits) + log_transition[:, labels].T, axis=-1
  )


def mean_forward_cross_entropy(
    transition: jax.Array, logits: jax.Array, labels: jax.Array, indices
) -> jax.Array:
  del indices
  return jnp.mean(forward_cross_entropy(logits, labels, transition))


class ForwardState(NamedTuple):
  """The network with its optimizer, and the T it corrects with."""

  model: supervised.SupervisedState
  estimate: estimation.Estimate


def make(ctx: Context) -> Method:
  tx = supervised.sgd_weight_decay(ctx)
  ce = supervised.supervised(ctx, tx)
  true = true_transition(ctx)
  oracle = ctx.args.transition == "oracle"
  if oracle:
    _check_oracle(ctx.config.noise_type)
  num_warmup = 0 if oracle else warmup_epochs(ctx.args, ctx.config.num_epochs)

  def init(key: jax.Array) -> ForwardState:
    estimate = estimation.placeholder(ctx.num_classes)
    if oracle:
      estimate = estimate._replace(transition=true.astype(np.float32))
    return ForwardState(ce.init(key), estimate)

  def predict(state: ForwardState, images: jax.Array) -> jax.Array:
    return ce.predict(state.model, images)

  def report(state: ForwardState) -> dict:
    if oracle:
      return {"transition": np.asarray(state.estimate.transition)}
    return estimation.report(state.estimate, true)

  def fresh_network():
    key = jax.random.fold_in(jax.random.key(ctx.config.seed), FRESH_NET_STREAM)
    return ctx.network.init(key)

  forward_step = corrected_step(ctx, tx, mean_forward_cross_entropy)
  return Method(
      init=init,
      train_step=forward_step,
      predict=predict,
      phases=(
          Phase(
              "warmup", num_warmup, step_on_model(ce.train_step),
              hands_over_best=True,
              on_end=estimate_on_end(ctx, tx, fresh_network),
          ),
          Phase("forward", ctx.config.num_epochs - num_warmup, forward_step),
      ),
      report=report,
  )
