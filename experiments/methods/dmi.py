"""DMI (Xu et al., NeurIPS 2019): the determinant-based mutual information loss.

L_DMI = -log(|det(U)| + 1e-3) with U = onehot(y)^T softmax(f), the (C, C)
count matrix of noisy labels against predicted distributions over the batch.
Under an instance-independent noise transition T the expected U is T^T
times the clean one, so its determinant is det(T) times the clean one's: in
expectation -log|det U| is the clean loss plus a constant (information
monotone, robust to such noise). The absolute value makes
the sign of det (a property of how classes are ordered) irrelevant; the loss
is a sum over examples, so the batch's order does not matter either.

Training follows the official recipe: CE first (phase ``ce``), then L_DMI
(phase ``train``) from the CE model with its own small constant-lr SGD. The
official code trains CE for 120 epochs and then DMI for 100
(Newbeeer/L_DMI CIFAR-10/CE.py line 56, DMI.py line 109); by default we keep
that ratio, ce_epochs = round(120 / 220 * num_epochs). With
ce_epochs >= num_epochs no DMI epoch runs.

Batch size: U has rank <= B, so det(U) = 0 and the gradient vanishes
whenever the batch has fewer examples than classes (Newbeeer/L_DMI issue #7);
batches that miss a class are singular too, so B should be well above C (the
official CIFAR-10 runs use B = 256 for C = 10, dataset.py line 38). ``make``
rejects batch_size < num_classes.

Deviations:
* U is not divided by B by default. The official 10-class code does not
  divide (CIFAR-10/DMI.py line 18); its 2-class code does
  (fashion/main.py line 22), and so does the paper's definition of U as a
  joint distribution. Divided, |det U| <= C^-C (1e-10 for C = 10) is far below
  the 1e-3 floor and the gradient is scaled by |det U| / (|det U| + 1e-3), i.e.
  almost zero; undivided, -log|det U| differs from the divided one by a
  constant and the floor matters only for near-singular U.
  ``divide_by_batch=True`` gives the divided form.
* The CE phase uses the protocol's SGD and learning-rate schedule (the
  official CE: SGD lr 0.1 / 0.01 / 0.001 at epochs 40 / 80, weight decay
  1e-4, CE.py lines 58-63). DMI starts from the last CE model, where the
  official code starts from the CE model of best noisy-validation accuracy
  (CE.py lines 69-71, DMI.py line 104): the method interface does not give a
  method the best-validation state.
* The official code builds a new SGD (zero momentum) every epoch
  (DMI.py line 112); our DMI optimizer starts with zero momentum once and
  keeps it across epochs.
* The official loop skips incomplete batches (DMI.py line 26); the training
  loop drops the last partial batch of every epoch for every method anyway.

References:
  Xu, Cao, Kong, Wang. "L_DMI: A Novel Information-theoretic Loss Function for
  Training Deep Nets Robust to Label Noise". NeurIPS 2019.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict
import optax

from experiments import errors
from experiments.data import specs
from experiments.methods import losses
from experiments.methods import supervised
from experiments.methods.base import Batch
from experiments.methods.base import Context
from experiments.methods.base import Method
from experiments.methods.base import NetworkState
from experiments.methods.base import Phase
from experiments.methods.base import StepInfo

DESCRIPTION = "CE warm-up, then L_DMI = -log|det(onehot^T softmax)|, SGD 1e-6"

# The floor inside the log: Newbeeer/L_DMI CIFAR-10/DMI.py line 19.
DET_FLOOR = 1e-3
# Official epochs of CE then DMI: CIFAR-10/CE.py line 56, DMI.py line 109.
OFFICIAL_CE_FRACTION = 120 / (120 + 100)


def default_args() -> ml_collections.ConfigDict:
  """The CE phase's length and the DMI phase's loss and optimizer."""
  return ml_collections.ConfigDict({
      # Epochs of CE before DMI; None = round(OFFICIAL_CE_FRACTION *
      # num_epochs), the official 120 CE : 100 DMI epochs.
      "ce_epochs": config_dict.placeholder(int),
      # The DMI phase's SGD: Newbeeer/L_DMI CIFAR-10/DMI.py lines 110-112
      # (lr 1e-6, momentum 0.9, weight_decay 1e-4), constant.
      "learning_rate": 1e-6,
      "momentum": 0.9,
      "weight_decay": 1e-4,
      # U = counts (CIFAR-10/DMI.py line 18) or counts / B (fashion/main.py
      # line 22); see the module docstring.
      "divide_by_batch": False,
  })


def check_args(args: ml_collections.ConfigDict) -> None:
  """Raises ValueError for hyperparameters outside their range."""
  if args.ce_epochs is not None and args.ce_epochs < 0:
    raise errors.UserError(
        f"method_args ce_epochs must be >= 0, got {args.ce_epochs}."
    )
  for name in ("learning_rate", "momentum", "weight_decay"):
    if args[name] < 0:
      raise errors.UserError(f"method_args {name} must be >= 0, got {args[name]}.")


def check_config(
    args: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> None:
  """The checks that need the protocol, before any data loads."""
  del args
  check_batch_size(config.batch_size, specs.get_spec(config.dataset).num_classes)


def check_batch_size(batch_size: int, num_classes: int) -> None:
  """Raises ValueError when det(U) is identically 0 (batch < classes)."""
  if batch_size < num_classes:
    raise errors.UserError(
        f"DMI needs batch_size >= num_classes: with batch_size={batch_size} "
        f"< {num_classes} classes, U = onehot(y)^T softmax has rank <= "
        f"{batch_size}, its determinant is always 0 and L_DMI has no "
        "gradient. Use a larger --config.batch_size (the official CIFAR-10 "
        "runs use 256 for 10 classes)."
    )


def dmi_loss(
    logits: jax.Array, labels: jax.Array, divide_by_batch: bool = False
) -> jax.Array:
  """-log(|det(onehot(labels)^T softmax(logits))| + 1e-3), a scalar."""
  probs = jax.nn.softmax(logits)
  one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=probs.dtype)
  joint = jnp.matmul(one_hot.T, probs, precision=jax.lax.Precision.HIGHEST)
  if divide_by_batch:
    joint = joint / labels.shape[0]
  # det's derivative in JAX is the adjugate: finite where U is singular.
  return -jnp.log(jnp.abs(jnp.linalg.det(joint)) + DET_FLOOR)


def ce_epochs(ctx: Context) -> int:
  """The configured CE epochs, or the official share of num_epochs."""
  if ctx.args.ce_epochs is not None:
    return ctx.args.ce_epochs
  return round(OFFICIAL_CE_FRACTION * ctx.config.num_epochs)


class DMIState(NamedTuple):
  """One network, and the CE phase's and the DMI phase's optimizer states."""

  net: NetworkState
  ce_opt_state: optax.OptState
  dmi_opt_state: optax.OptState


def make(ctx: Context) -> Method:
  check_batch_size(ctx.config.batch_size, ctx.num_classes)
  args = ctx.args
  ce_tx = supervised.sgd_weight_decay(ctx)
  dmi_tx = optax.chain(
      optax.add_decayed_weights(args.weight_decay),
      optax.sgd(args.learning_rate, args.momentum),
  )
  ce = supervised.supervised(ctx, ce_tx, losses.mean_cross_entropy)
  dmi = supervised.supervised(
      ctx, dmi_tx,
      lambda logits, labels, indices: dmi_loss(
          logits, labels, args.divide_by_batch
      ),
  )

  def init(key: jax.Array) -> DMIState:
    net = ctx.network.init(key)
    return DMIState(net, ce_tx.init(net.params), dmi_tx.init(net.params))

  def ce_step(state: DMIState, batch: Batch, info: StepInfo):
    inner, metrics = ce.train_step(
        supervised.SupervisedState(state.net, state.ce_opt_state), batch, info
    )
    return state._replace(net=inner.net, ce_opt_state=inner.opt_state), metrics

  def dmi_step(state: DMIState, batch: Batch, info: StepInfo):
    inner, metrics = dmi.train_step(
        supervised.SupervisedState(state.net, state.dmi_opt_state), batch, info
    )
    # The loop logs the protocol's rate unless the step reports its own.
    metrics = {**metrics, "learning_rate": jnp.float32(args.learning_rate)}
    return state._replace(net=inner.net, dmi_opt_state=inner.opt_state), metrics

  def predict(state: DMIState, images: jax.Array) -> jax.Array:
    return ce.predict(supervised.SupervisedState(state.net, None), images)

  return Method(
      init=init,
      train_step=dmi_step,
      predict=predict,
      phases=(Phase("ce", ce_epochs(ctx), ce_step),),
  )
