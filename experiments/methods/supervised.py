"""A method that trains one network by an optimizer on a per-batch loss.

CE, CDR and the robust-loss baselines differ only in their loss and their
optimizer; this module is the one training step they share.
"""

from typing import Callable, NamedTuple

import jax
import optax

from experiments.methods import losses
from experiments.methods.base import Batch
from experiments.methods.base import Context
from experiments.methods.base import Method
from experiments.methods.base import NetworkState
from experiments.methods.base import StepInfo

# (logits (B, C), noisy labels (B,), dataset indices (B,)) -> scalar loss.
LossFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
# Scalars read from the optimizer state after each step.
OptimizerMetrics = Callable[[optax.OptState], dict[str, jax.Array]]


class SupervisedState(NamedTuple):
  """One network and its optimizer state."""

  net: NetworkState
  opt_state: optax.OptState


def supervised(
    ctx: Context,
    tx: optax.GradientTransformation,
    loss: LossFn = losses.mean_cross_entropy,
    optimizer_metrics: OptimizerMetrics = lambda opt_state: {},
) -> Method:
  """One network, trained by `tx` on `loss`.

  Args:
    ctx: the run's context (network).
    tx: the optimizer; it receives the parameters (CDR needs them).
    loss: the training objective of one batch.
    optimizer_metrics: diagnostics of the optimizer state, logged per epoch.

  Returns:
    The method.
  """
  network = ctx.network

  def init(key: jax.Array) -> SupervisedState:
    net = network.init(key)
    return SupervisedState(net, tx.init(net.params))

  def train_step(state: SupervisedState, batch: Batch, info: StepInfo):
    del info

    def objective(params):
      logits, batch_stats = network.apply(
          params, state.net.batch_stats, batch.images, train=True
      )
      return loss(logits, batch.labels, batch.indices), (logits, batch_stats)

    (value, (logits, batch_stats)), grads = jax.value_and_grad(
        objective, has_aux=True
    )(state.net.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.net.params)
    params = optax.apply_updates(state.net.params, updates)
    metrics = {
        "train_loss": value,
        # On the noisy labels, as the weights change during the epoch.
        "train_running_acc": losses.accuracy(logits, batch.labels),
        **optimizer_metrics(opt_state),
    }
    return SupervisedState(NetworkState(params, batch_stats), opt_state), metrics

  def predict(state: SupervisedState, images: jax.Array) -> jax.Array:
    logits, _ = network.apply(
        state.net.params, state.net.batch_stats, images, train=False
    )
    return logits

  return Method(init=init, train_step=train_step, predict=predict)


def sgd_weight_decay(ctx: Context) -> optax.GradientTransformation:
  """torch's SGD(lr, momentum, weight_decay): decay added before momentum."""
  return optax.chain(
      optax.add_decayed_weights(ctx.config.weight_decay),
      optax.sgd(ctx.learning_rate, ctx.config.momentum),
  )

