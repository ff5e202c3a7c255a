"""Joint Optimization (Tanaka et al., CVPR 2018): learn the labels, then retrain.

Two stages, as the official code (DaikiTanaka-UT/JointOptimization, Chainer):

1. ``label_learning`` (first_step_train.py): one network is trained on
   per-example soft labels with
       L = L_c + alpha * L_p + beta * L_e,
   L_c = mean_i CE(soft_label_i, s_i) (L151), the prior term
   L_p = KL(p || mean_i s_i) with p the uniform class prior (L137, L152; the
   official code writes -sum_j p_j log mean_i s_ij, which differs by the
   constant sum_j p_j log p_j, so the gradients are the same), and the entropy
   L_e = -mean_i sum_j s_ij log s_ij (L153). The soft labels start as the
   one-hot noisy labels. Each step records the softmax s_i of its batch, from
   the same training forward pass (L158); after every epoch (L103-112, an
   epoch trigger, L234) that epoch's predictions enter a window of the last
   ``num_recent`` = 10 epochs, and from epoch ``begin_epoch`` on the soft
   labels become the window's mean and the hard labels its argmax.
2. ``retrain`` (second_step_train.py): a fresh network learns CE to the
   stage-1 soft labels (L49, L63; ``second_stage_targets="hard"`` uses their
   argmax instead).

Both networks live in the state from the start (the second one untouched
until stage 2), so the fresh network's initialization and the change of stage
are part of the checkpoint. ``predict`` evaluates the stage-1 network until
the first stage-2 step, then the stage-2 one.

Deviations from the official code, each with the official setting as an arg:
* The optimizer is the protocol's SGD (lr, momentum, weight decay, milestones)
  for both stages; the schedule restarts with the fresh stage-2 optimizer.
  Officially stage 1 runs at a constant lr 0.1 (first_step_train.py L175, no
  schedule) and stage 2 at 0.2 with x0.1 at 1/3 and 2/3 of its epochs
  (second_step_train.py L78, L128-129), both with weight decay 1e-4 (L176,
  L80) and batch 128: set ``first_stage_learning_rate``,
  ``second_stage_learning_rate``, ``weight_decay`` (and the config's
  batch_size).
* Officially 200 + 120 epochs with relabeling from epoch 70 (L178, L82,
  L188); here the run's num_epochs is split in the same proportions unless
  ``first_stage_epochs`` / ``begin_epoch`` are given.
* The window's mean is over the epochs recorded so far (at most
  ``num_recent``): the official code averages all 10 slots, zeros included,
  which only matters when relabeling starts before epoch 10.
* An example that no step has visited yet (the loop drops a partial batch
  per epoch) counts with its one-hot noisy label in the window.

References:
  Tanaka, Ikami, Yamasaki, Aizawa. "Joint Optimization Framework for Learning
  with Noisy Labels". CVPR 2018.
"""

from typing import NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments import errors
from experiments import schema
from experiments.methods import losses
from experiments.methods.base import Batch
from experiments.methods.base import Context
from experiments.methods.base import EpochView
from experiments.methods.base import Method
from experiments.methods.base import NetworkState
from experiments.methods.base import Phase
from experiments.methods.base import StepInfo
from experiments.methods.joint_labels import joint_loss
from experiments.methods.joint_labels import soft_cross_entropy
from experiments.methods.joint_labels import update_window
from experiments.methods.supervised import SupervisedState

DESCRIPTION = "Joint Optimization: learn soft labels (CE + prior + entropy), retrain"

# Official epochs: 200 in stage 1 (first_step_train.py L178), 120 in stage 2
# (second_step_train.py L82), relabeling from epoch 70 (L188).
_OFFICIAL_FIRST_STAGE_FRACTION = 200 / 320
_OFFICIAL_BEGIN_FRACTION = 70 / 200


# Joint Optimization's hyperparameters (see the module docstring).
ARGS = {
    # README.md L13 (CIFAR-10, symmetric 0.7) and common re-implementations;
    # the argparse defaults are 1.0 and 0.5 (first_step_train.py L190-193).
    "alpha": schema.Real(1.2, 0.0),
    "beta": schema.Real(0.8, 0.0),
    # None: round(200 / 320 * num_epochs), the official split (L178, L82).
    "first_stage_epochs": schema.Int(None, 1, optional=True),
    # 1-based epoch whose end first relabels; None: 70 / 200 of stage 1
    # (first_step_train.py L188).
    "begin_epoch": schema.Int(None, 1, optional=True),
    # Epochs of predictions averaged into the labels (L106-107).
    "num_recent": schema.Int(10, 1),
    # "soft" (second_step_train.py L49, L63) or "hard" (their argmax).
    "second_stage_targets": schema.Str("soft", ("soft", "hard")),
    # None: the protocol's schedule. Official: constant 0.1 (L175).
    "first_stage_learning_rate": schema.Real(None, 0.0, low_open=True, optional=True),
    # None: the protocol's schedule, restarted. Official: 0.2, x0.1 at 1/3
    # and 2/3 of the stage (second_step_train.py L78, L128-129).
    "second_stage_learning_rate": schema.Real(None, 0.0, low_open=True, optional=True),
    # None: the protocol's. Official: 1e-4 (L176; second_step_train.py L80).
    "weight_decay": schema.Real(None, 0.0, optional=True),
}


def default_args() -> ml_collections.ConfigDict:
  return schema.defaults(ARGS)


def check_config(
    args: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> None:
  """The checks that need the protocol, before any data loads."""
  first = args.first_stage_epochs
  if first is not None and first > config.num_epochs:
    raise errors.UserError(
        f"method_args first_stage_epochs={first} exceeds num_epochs="
        f"{config.num_epochs}: the run would end inside stage 1."
    )
  first, _, begin = stage_epochs(args, config.num_epochs)
  if begin > first:
    raise errors.UserError(
        f"method_args begin_epoch={begin} is after stage 1 ({first} epochs): "
        "the labels would never be updated."
    )


class JointState(NamedTuple):
  """Both stages' networks and the per-example labels.

  Attributes:
    first: the stage-1 network (label learning) and its optimizer state.
    second: the fresh stage-2 network and its optimizer state.
    stage: int32, 0 until the first stage-2 step, then 1 (which network
      `predict` evaluates).
    relabeled: bool, whether `soft_labels` replace the noisy labels.
    soft_labels: (N, C) float32 targets.
    epoch_predictions: (N, C) float32, each example's softmax at its last
      stage-1 step.
    recent_predictions: (num_recent, N, C) float32, the last epochs' ones.
    num_recorded: int32, epochs in `recent_predictions`.
    labels: (N,) int32 hard labels (the noisy ones until relabeled).
    num_changed: int32, how many `labels` differ from the noisy labels.
  """

  first: SupervisedState
  second: SupervisedState
  stage: jax.Array
  relabeled: jax.Array
  soft_labels: jax.Array
  epoch_predictions: jax.Array
  recent_predictions: jax.Array
  num_recorded: jax.Array
  labels: jax.Array
  num_changed: jax.Array


def stage_epochs(
    args: ml_collections.ConfigDict, num_epochs: int
) -> tuple[int, int, int]:
  """(stage-1 epochs, stage-2 epochs, 1-based epoch of the first relabeling)."""
  first = args.first_stage_epochs
  if first is None:
    first = max(1, round(_OFFICIAL_FIRST_STAGE_FRACTION * num_epochs))
  begin = args.begin_epoch
  if begin is None:
    begin = max(1, round(_OFFICIAL_BEGIN_FRACTION * first))
  return first, max(num_epochs - first, 0), begin


def _optimizer(ctx: Context, learning_rate) -> optax.GradientTransformation:
  """torch/Chainer SGD: weight decay added to the gradient before momentum."""
  weight_decay = ctx.args.weight_decay
  if weight_decay is None:
    weight_decay = ctx.config.weight_decay
  return optax.chain(
      optax.add_decayed_weights(weight_decay),
      optax.sgd(learning_rate, ctx.config.momentum),
  )


def optimizers(ctx: Context) -> tuple[optax.GradientTransformation, ...]:
  """The two stages' optimizers; each schedule counts its own stage's steps."""
  _, second_epochs, _ = stage_epochs(ctx.args, ctx.config.num_epochs)
  first_lr = ctx.args.first_stage_learning_rate
  if first_lr is None:
    first_lr = ctx.learning_rate
  second_lr = ctx.args.second_stage_learning_rate
  if second_lr is None:
    second_lr = ctx.learning_rate
  else:
    steps = ctx.steps_per_epoch
    second_lr = optax.piecewise_constant_schedule(
        second_lr,
        {int(second_epochs / 3) * steps: 0.1,
         int(second_epochs * 2 / 3) * steps: 0.1},
    )
  return _optimizer(ctx, first_lr), _optimizer(ctx, second_lr)


def make(ctx: Context) -> Method:
  """Joint Optimization as two phases: label learning, then retraining."""
  network = ctx.network
  num_classes, num_train = ctx.num_classes, ctx.num_train
  alpha, beta = ctx.args.alpha, ctx.args.beta
  prior = jnp.full((num_classes,), 1.0 / num_classes)  # L137: uniform.
  first_epochs, second_epochs, begin_epoch = stage_epochs(
      ctx.args, ctx.config.num_epochs
  )
  num_recent = ctx.args.num_recent
  hard_targets = ctx.args.second_stage_targets == "hard"
  tx_first, tx_second = optimizers(ctx)

  def init(key: jax.Array) -> JointState:
    key_first, key_second = jax.random.split(key)
    first = network.init(key_first)
    second = network.init(key_second)
    zeros = jnp.zeros((num_train, num_classes), jnp.float32)
    return JointState(
        first=SupervisedState(first, tx_first.init(first.params)),
        second=SupervisedState(second, tx_second.init(second.params)),
        stage=jnp.zeros([], jnp.int32),
        relabeled=jnp.zeros([], jnp.bool_),
        soft_labels=zeros,
        epoch_predictions=zeros,
        recent_predictions=jnp.zeros((num_recent, num_train, num_classes)),
        num_recorded=jnp.zeros([], jnp.int32),
        labels=jnp.zeros((num_train,), jnp.int32),
        num_changed=jnp.zeros([], jnp.int32),
    )

  def update(pair: SupervisedState, tx, batch: Batch, loss_fn):
    """One optimizer step of `pair` on loss_fn(logits) -> (loss, aux)."""

    def objective(params):
      logits, batch_stats = network.apply(
          params, pair.net.batch_stats, batch.images, train=True
      )
      value, aux = loss_fn(logits)
      return value, (logits, batch_stats, aux)

    (value, (logits, batch_stats, aux)), grads = jax.value_and_grad(
        objective, has_aux=True
    )(pair.net.params)
    updates, opt_state = tx.update(grads, pair.opt_state, pair.net.params)
    params = optax.apply_updates(pair.net.params, updates)
    return SupervisedState(NetworkState(params, batch_stats), opt_state), (
        value, logits, aux
    )

  def targets(state: JointState, batch: Batch, hard: bool) -> jax.Array:
    noisy = jax.nn.one_hot(batch.labels, num_classes)
    if hard:
      learned = jax.nn.one_hot(state.labels[batch.indices], num_classes)
    else:
      learned = state.soft_labels[batch.indices]
    return jnp.where(state.relabeled, learned, noisy)

  def label_learning_step(state: JointState, batch: Batch, info: StepInfo):
    del info
    soft = targets(state, batch, hard=False)
    first, (value, logits, terms) = update(
        state.first, tx_first, batch,
        lambda logits: joint_loss(logits, soft, prior, alpha, beta),
    )
    # The prediction of this forward pass, as the official code records it.
    probs = jax.nn.softmax(lax.stop_gradient(logits))
    state = state._replace(
        first=first,
        epoch_predictions=state.epoch_predictions.at[batch.indices].set(probs),
    )
    return state, {
        "train_loss": value,
        "train_running_acc": losses.accuracy(logits, batch.labels),
        **terms,
    }

  def retrain_step(state: JointState, batch: Batch, info: StepInfo):
    del info
    target = targets(state, batch, hard=hard_targets)
    second, (value, logits, _) = update(
        state.second, tx_second, batch,
        lambda logits: (soft_cross_entropy(logits, target), ()),
    )
    state = state._replace(second=second, stage=jnp.ones([], jnp.int32))
    return state, {
        "train_loss": value,
        "train_running_acc": losses.accuracy(logits, batch.labels),
    }

  def predict(state: JointState, images: jax.Array) -> jax.Array:
    def apply(net: NetworkState):
      return network.apply(net.params, net.batch_stats, images, train=False)[0]

    return lax.cond(
        state.stage == 0,
        lambda: apply(state.first.net),
        lambda: apply(state.second.net),
    )

  def end_epoch(state: JointState, epoch: int, view: EpochView) -> JointState:
    if epoch > first_epochs:
      return state  # Stage 2 trains on fixed labels.
    window = update_window(
        np.asarray(state.recent_predictions), int(state.num_recorded),
        np.asarray(state.epoch_predictions), view.train_labels, epoch,
    )
    relabeled = bool(state.relabeled) or epoch >= begin_epoch
    soft = window.soft_labels if relabeled else np.asarray(state.soft_labels)
    labels = np.argmax(soft, -1) if relabeled else view.train_labels
    return state._replace(
        relabeled=jnp.asarray(relabeled),
        soft_labels=jnp.asarray(soft, jnp.float32),
        recent_predictions=jnp.asarray(window.recent_predictions),
        num_recorded=jnp.int32(window.num_recorded),
        labels=jnp.asarray(labels, jnp.int32),
        num_changed=jnp.int32(np.sum(labels != view.train_labels)),
    )

  def report(state: JointState) -> dict:
    return {
        "relabeled_labels": np.asarray(state.labels),
        "num_labels_changed": int(state.num_changed),
        "relabeled": bool(state.relabeled),
    }

  return Method(
      init=init,
      train_step=retrain_step,
      predict=predict,
      phases=(
          Phase("label_learning", first_epochs, label_learning_step),
          Phase("retrain", second_epochs, retrain_step),
      ),
      end_epoch=end_epoch,
      report=report,
  )
