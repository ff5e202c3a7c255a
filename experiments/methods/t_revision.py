"""T-Revision (Xia et al., NeurIPS 2019): reweighting with T, then revising T.

Three stages (xiaoboxia/T-Revision main.py):

1. ``warmup``: CE; at its end T is estimated by anchor points
   (``estimation``, as in ``forward``), l.153-217.
2. ``reweight``: importance reweighting. Each example's CE is weighted by
   beta = p(y | x) / (T^T p(x))_y, the clean over the modelled noisy
   posterior of its label, p = softmax(f(x)); beta is a constant of the
   gradient (loss.py l.10-29 wraps it in a new ``Variable``), l.231-257.
3. ``revision``: a slack Delta T (init 0, l.300) is learned with the network
   through the same reweighted loss with T + Delta T; here beta is not
   detached, and the gradient reaches Delta T only through it (loss.py
   l.36-56), by Adam at lr 5e-7 with L2 decay 1e-4 on every parameter and
   Delta T (l.19-20, 85), l.304-330.

Deviations, each for our one-run budget or for the loop's interface:

* Stage lengths. The official runs are 20 warm-up + 200 reweighting + 200
  revision epochs (CIFAR-10; MNIST 20 + 100 + 200; CIFAR-100 15 + 200 +
  200: main.py l.25-27, 43-79). We split ``num_epochs``: the warm-up is 10%
  (20 of the protocol's 200 CIFAR epochs), the rest is halved between
  reweighting and revision (equal, as 200 / 200), the revision taking the odd
  epoch. ``warmup_epochs`` and ``revision_epochs`` set them.
* Reweighting uses the protocol's SGD (momentum 0.9, weight decay, schedule
  over the whole run); the official one is SGD lr 0.01, momentum 0.9, weight
  decay 1e-4, steps at its own epochs 40 and 80 (l.18-20, 84-86): set
  ``weight_decay=1e-4`` for its decay. The warm-up is the protocol's CE
  (the official warm-up SGD has no momentum, l.83).
* Hand-overs, as the official code: the reweighting starts from the
  warm-up epoch of best noisy-validation accuracy, whose model also gives
  the anchor-point T (main.py l.205-226), and the revision starts from the
  reweighting epoch of best noisy-validation accuracy (l.294-299); both
  stages are the loop's ``Phase.hands_over_best``. The official code ranks
  the reweighting epochs by the accuracy of the modelled noisy posterior
  T^T p on the noisy validation labels (l.258-278); the loop ranks every
  phase by the evaluated network's own prediction. The reweighting starts a
  fresh SGD state, the revision a fresh Adam state (and Delta T = 0, l.300).
* The reported epoch is the revision epoch of best noisy-validation
  accuracy (the protocol's rule, within the method's own last stage); the
  official script prints every epoch's test accuracy and selects none
  (l.353-367). The two earlier stages' best epochs are in ``summary.json``
  under ``warmups``.
* The official revision loss adds Delta T to T once per example inside its
  loop (loss.py l.47: T = T + correction), so example i of a batch uses
  T + (i + 1) Delta T; we use T + Delta T for every example (the paper's
  loss; the later ``reweighting_revision_loss_v2`` also does, but detaches
  beta, which would leave Delta T without a gradient).

References:
  Xia, Liu, Wang, Han, Gong, Niu, Sugiyama. "Are anchor points really
  indispensable in label-noise learning?". NeurIPS 2019.
"""

import copy
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict
import numpy as np
import optax

from experiments import errors
from experiments import schema
from experiments.methods import estimation
from experiments.methods import forward
from experiments.methods import losses
from experiments.methods import supervised
from experiments.methods.base import Batch
from experiments.methods.base import Context
from experiments.methods.base import Method
from experiments.methods.base import NetworkState
from experiments.methods.base import Phase
from experiments.methods.base import StepInfo

DESCRIPTION = "T-Revision: CE warm-up, reweighting by T, then revising T"


ARGS = {
    **forward.ESTIMATION_ARGS,
    # Revision epochs; None = half of the epochs after the warm-up (rounded
    # up): main.py l.25-26, 200 reweighting and 200 revision epochs. The
    # reported epoch is a revision epoch: at least 1.
    "revision_epochs": schema.Int(None, 1, optional=True),
    # Adam's rate and L2 decay in the revision stage: main.py l.19-20, 85.
    "revision_learning_rate": schema.Real(5e-7, 0.0),
    "revision_weight_decay": schema.Real(1e-4, 0.0),
    # SGD's weight decay in the warm-up and reweighting; None = the
    # protocol's (the official 1e-4: main.py l.20, 83-84).
    "weight_decay": schema.Real(None, 0.0, optional=True),
}


def default_args() -> ml_collections.ConfigDict:
  return schema.defaults(ARGS)





def check_config(
    args: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> None:
  """The checks that need the protocol, before any data loads."""
  stage_epochs(args, config.num_epochs)


def stage_epochs(
    args: ml_collections.ConfigDict, num_epochs: int
) -> tuple[int, int, int]:
  """(warm-up, reweighting, revision) epochs, summing to num_epochs."""
  warmup = forward.warmup_epochs(args, num_epochs)
  revision = args.revision_epochs
  if revision is None:
    revision = (num_epochs - warmup + 1) // 2
  if warmup + revision > num_epochs:
    raise errors.UserError(
        f"warmup_epochs={warmup} + revision_epochs={revision} exceed"
        f" num_epochs={num_epochs}."
    )
  return warmup, num_epochs - warmup - revision, revision


def importance_weights(
    logits: jax.Array, labels: jax.Array, transition: jax.Array
) -> jax.Array:
  """beta = p_y / (T^T p)_y, p = softmax(logits); shape (B,)."""
  probs = jax.nn.softmax(logits)
  clean = jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0]
  noisy = jnp.take_along_axis(probs @ transition, labels[:, None], axis=-1)
  return clean / noisy[:, 0]


def weighted_cross_entropy(
    logits: jax.Array, labels: jax.Array, weights: jax.Array
) -> jax.Array:
  """Mean of weights * CE over the batch (T-Revision's loss.py l.26-29)."""
  return jnp.mean(weights * losses.cross_entropy(logits, labels))


def _reweighting_loss(transition, logits, labels, indices):
  """The reweighting stage's loss: beta is a constant of the gradient."""
  del indices
  weights = importance_weights(logits, labels, transition)
  return weighted_cross_entropy(logits, labels, jax.lax.stop_gradient(weights))


class TRevisionState(NamedTuple):
  """The network, its two optimizers, the estimated T and its slack.

  Attributes:
    model: the network and its SGD state (warm-up and reweighting).
    revision_opt_state: Adam's state over (network parameters, Delta T).
    estimate: the anchor-point T (and the other estimates), set after the
      warm-up.
    delta: ``(C, C)`` the learned slack Delta T.
  """

  model: supervised.SupervisedState
  revision_opt_state: optax.OptState
  estimate: estimation.Estimate
  delta: jax.Array


def _with_weight_decay(ctx: Context) -> Context:
  if ctx.args.weight_decay is None:
    return ctx
  config = copy.deepcopy(ctx.config)
  config.weight_decay = ctx.args.weight_decay
  return ctx._replace(config=config)


def make(ctx: Context) -> Method:
  network = ctx.network
  num_warmup, num_reweight, num_revision = stage_epochs(
      ctx.args, ctx.config.num_epochs
  )
  tx = supervised.sgd_weight_decay(_with_weight_decay(ctx))
  # torch's Adam(weight_decay): L2 added to the gradient before Adam.
  tx_revision = optax.chain(
      optax.add_decayed_weights(ctx.args.revision_weight_decay),
      optax.adam(ctx.args.revision_learning_rate),
  )
  ce = supervised.supervised(ctx, tx)
  true = forward.true_transition(ctx)

  def init(key: jax.Array) -> TRevisionState:
    model = ce.init(key)
    delta = jnp.zeros((ctx.num_classes, ctx.num_classes))
    return TRevisionState(
        model,
        tx_revision.init((model.net.params, delta)),
        estimation.placeholder(ctx.num_classes),
        delta,
    )

  def revision_step(state: TRevisionState, batch: Batch, info: StepInfo):
    del info
    net = state.model.net

    def objective(variables):
      params, delta = variables
      logits, batch_stats = network.apply(
          params, net.batch_stats, batch.images, train=True
      )
      # beta is not detached here: Delta T learns through it.
      weights = importance_weights(
          logits, batch.labels, state.estimate.transition + delta
      )
      value = weighted_cross_entropy(logits, batch.labels, weights)
      return value, (logits, batch_stats)

    variables = (net.params, state.delta)
    (value, (logits, batch_stats)), grads = jax.value_and_grad(
        objective, has_aux=True
    )(variables)
    updates, opt_state = tx_revision.update(
        grads, state.revision_opt_state, variables
    )
    params, delta = optax.apply_updates(variables, updates)
    model = state.model._replace(net=NetworkState(params, batch_stats))
    metrics = {
        "train_loss": value,
        "train_running_acc": losses.accuracy(logits, batch.labels),
        "delta_abs_max": jnp.max(jnp.abs(delta)),
        # The loop logs the protocol's rate unless the step reports its own.
        "learning_rate": jnp.float32(ctx.args.revision_learning_rate),
    }
    return TRevisionState(model, opt_state, state.estimate, delta), metrics

  def predict(state: TRevisionState, images: jax.Array) -> jax.Array:
    return ce.predict(state.model, images)

  def report(state: TRevisionState) -> dict:
    result = estimation.report(state.estimate, true)
    revised = result["transition"] + state.delta
    result["revised_transition"] = revised
    if true is not None:
      result["revised_max_abs_error"] = float(np.max(np.abs(revised - true)))
      result["revised_relative_error"] = estimation.relative_error(revised, true)
    return result

  return Method(
      init=init,
      train_step=revision_step,
      predict=predict,
      phases=(
          Phase(
              "warmup", num_warmup, forward.step_on_model(ce.train_step),
              hands_over_best=True, on_end=forward.estimate_on_end(ctx, tx),
          ),
          Phase(
              "reweight", num_reweight,
              forward.corrected_step(ctx, tx, _reweighting_loss),
              hands_over_best=True,
          ),
          Phase("revision", num_revision, revision_step),
      ),
      report=report,
  )
