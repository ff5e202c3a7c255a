"""Small-loss sample selection, shared by MentorNet, Co-teaching and Co-teaching+.

The three baselines keep, in every batch, the fraction R(t) of their
candidate examples with the smallest cross-entropy and train on those only:

* R(t) = 1 - tau * min((t / T_k)^c, 1), with t the 0-based epoch: every
  example in the first epoch, tau of them forgotten from epoch T_k on (the
  Co-teaching paper's schedule; defaults T_k = 10, c = 1 from
  bhanML/Co-teaching main.py L24-25). The official code
  (main.py L134-135) writes the schedule as ``linspace(0, tau ** c, T_k)``
  over its epochs 0..T_k-1 and trains from its epoch 1, so it forgets
  tau * e / (T_k - 1) in its e-th training epoch and all of tau from the
  9th (T_k = 10), where the formula reaches tau in the 11th; its exponent
  also applies to tau, not to t.
* Of n candidates the ``int(R(t) * n)`` smallest losses are kept (Python's
  float64 product, as the official code's ``int(remember_rate * len(...))``),
  all n when that count is 0 (xingruiyu/coteaching_plus loss.py L24-27).
  Ties keep the earlier position in the batch (a stable sort).
* Networks are updated on the mean cross-entropy of their kept examples.
  The official code divides that mean once more by the number kept
  (bhanML/Co-teaching loss.py L26-29), which its scale-invariant Adam barely
  notices; with the protocol's SGD it would shrink the step by the number
  kept (about the batch size), so we take the plain mean.

The forget rate tau is ``forget_rate``, or the true fraction of corrupted
labels (``forget_rate()``; the official default), or, with ``forget_rate_source="anchor"`` or
``"cleanlab"``, an estimate: for ``warmup_epochs`` (default 10% of the run)
tau = 0, so each selection keeps all its candidates (every example; for
Co-teaching+ every disagreement), then the noise rate is estimated from
network 1's predictions on the noisy training split
(``estimation.estimate_rate``, as CDR with an unknown rate), capped at
1 - 1/C (R = 0 would keep the whole batch), and R(t) continues its ramp
with that tau. The estimate is in the state (saved with the checkpoint) and
in ``report`` as ``estimated_tau``.

Every step returns ``selected``: the examples network 1 (the evaluated one)
was updated on. Per example the state records how often it was selected and
the last epochs it was *judged* (a candidate of the selection that fed
network 1) and selected; ``report`` returns as ``noisy_ids`` the examples
whose most recent judgement was a rejection.

Optimizer: the protocol's SGD (momentum, weight decay) by default, for a
fair comparison with CE and CDR; ``optimizer="adam"`` is the official
setting: Adam with lr 1e-3, times (N - t) / (N - 80) in epoch t >= 80 of N,
where beta1 also drops from 0.9 to 0.1 (bhanML/Co-teaching main.py L19,
L33, L119-131, L263). The official batch size is 128 (main.py L42) and an
epoch stops after about 400 iterations (main.py L32, L180); we keep the
protocol's config.batch_size and train on every batch.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict
import numpy as np
import optax

from experiments import errors
from experiments import schema
from experiments.methods import estimation
from experiments.methods import losses
from experiments.methods import selection
from experiments.methods import supervised
from experiments.methods.base import Batch
from experiments.methods.base import Context
from experiments.methods.base import EpochView
from experiments.methods.base import Method
from experiments.methods.base import NetworkState
from experiments.methods.base import Phase
from experiments.methods.base import StepInfo
from experiments.methods.supervised import SupervisedState


class Forward(NamedTuple):
  """One network's forward pass on the batch, and its pullback."""

  logits: jax.Array
  loss: jax.Array  # Per-example cross-entropy, (B,).
  batch_stats: Any
  pullback: Callable


def forward(
    network, learner: SupervisedState, batch: Batch, on_probabilities: bool
) -> Forward:
  """Train-mode forward; with ``on_probabilities`` the CE is taken of the
  softmax outputs (Co-teaching+'s official loss, see coteaching_plus)."""
  def per_example(params):
    logits, stats = network.apply(
        params, learner.net.batch_stats, batch.images, train=True
    )
    inputs = jax.nn.softmax(logits) if on_probabilities else logits
    return losses.cross_entropy(inputs, batch.labels), (logits, stats)

  loss, pullback, (logits, stats) = jax.vjp(
      per_example, learner.net.params, has_aux=True
  )
  return Forward(logits, loss, stats, pullback)


def update(
    tx: optax.GradientTransformation,
    learner: SupervisedState,
    fwd: Forward,
    weights: jax.Array,
) -> tuple[SupervisedState, jax.Array]:
  """One optimizer step on the weighted mean loss sum(w l) / max(sum(w), 1).

  With no example selected the gradient is zero and the optimizer still
  steps (momentum, weight decay), as the official code's ``step()``.
  """
  total = jnp.maximum(jnp.sum(weights), 1.0)
  (grads,) = fwd.pullback(weights / total)
  updates, opt_state = tx.update(grads, learner.opt_state, learner.net.params)
  params = optax.apply_updates(learner.net.params, updates)
  new = SupervisedState(NetworkState(params, fwd.batch_stats), opt_state)
  return new, jnp.sum(weights * fwd.loss) / total


class Selection(NamedTuple):
  """What a selection rule decides for one batch.

  Attributes:
    weights: one float (B,) 0/1 mask per network: the examples it learns.
    judged: bool (B,), candidates of the selection network 1 learns from.
    metrics: extra scalars to log.
  """

  weights: tuple[jax.Array, ...]
  judged: jax.Array
  metrics: dict[str, jax.Array]


# (forwards, batch, info, keep-count table) -> Selection.
SelectFn = Callable[[tuple[Forward, ...], Batch, StepInfo, np.ndarray], Selection]


class SmallLossState(NamedTuple):
  learners: tuple[SupervisedState, ...]
  record: selection.SelectionRecord
  # The estimated forget rate (float32 scalar); None with the oracle's, whose
  # R(t) stays a float64 table of constants: a float32 rate in the state
  # would change the oracle's keep counts at rounding ties.
  forget_rate: jax.Array | None = None


class SelectionPhase(NamedTuple):
  """A stretch of epochs with its own selection rule."""

  name: str
  num_epochs: int
  select: SelectFn
  on_probabilities: bool = False


def forget_rate(ctx: Context) -> float:
  """args.forget_rate, or the fraction of corrupted labels.

  The official default is the noise rate (bhanML/Co-teaching main.py L22,
  L112-115), whose symmetric and pairflip noises corrupt exactly that
  fraction; the paper defines tau as the fraction of noisy labels. Our
  oracle is that fraction, ``ctx.corruption_rate`` (0.4 n, not n, under
  Fashion-MNIST's asymmetric map, where 4 of 10 classes flip).
  """
  if ctx.args.forget_rate is None:
    return ctx.corruption_rate
  return ctx.args.forget_rate


def optimizer(ctx: Context) -> optax.GradientTransformation:
  """The protocol's SGD, or the official Adam plan (see module docstring)."""
  if ctx.args.optimizer == "sgd":
    return supervised.sgd_weight_decay(ctx)
  num_epochs = ctx.config.num_epochs
  decay_start = ctx.args.adam_decay_start
  span = max(num_epochs - decay_start, 1)

  def epoch(step):
    return step // ctx.steps_per_epoch

  def learning_rate(step):
    fraction = jnp.minimum((num_epochs - epoch(step)) / span, 1.0)
    return ctx.args.adam_learning_rate * fraction

  def b1(step):
    return jnp.where(epoch(step) < decay_start, 0.9, 0.1)

  return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, b1=b1)


def make(
    ctx: Context,
    num_networks: int,
    select: SelectFn,
    phases: tuple[SelectionPhase, ...] = (),
    on_probabilities: bool = False,
) -> Method:
  """A method of ``num_networks`` networks trained on small-loss selections.

  Args:
    ctx: the run's context.
    num_networks: 1 (MentorNet) or 2 (Co-teaching and Co-teaching+).
    select: the rule after the phases.
    phases: selection rules for the first epochs.
    on_probabilities: whether ``select``'s losses are the CE of the softmax
      outputs (see ``forward``).

  Returns:
    The method; ``predict`` is network 1.
  """
  network = ctx.network
  tx = optimizer(ctx)
  estimated = ctx.args.forget_rate_source != "oracle"
  if estimated:
    num_warmup = estimation.warmup_epochs(ctx.args, ctx.config.num_epochs)
    # R(t) = 1 - tau * ramp(t), tau from the state.
    ramp = 1.0 - selection.remember_rates(
        1.0, ctx.args.num_gradual, ctx.args.exponent
    )
  else:
    rates = selection.remember_rates(
        forget_rate(ctx), ctx.args.num_gradual, ctx.args.exponent
    )

  def init(key: jax.Array) -> SmallLossState:
    learners = []
    for i in range(num_networks):
      # Network 1 starts where CE starts, for paired comparisons.
      net = network.init(key if i == 0 else jax.random.fold_in(key, i))
      learners.append(SupervisedState(net, tx.init(net.params)))
    return SmallLossState(
        tuple(learners),
        selection.empty_record(ctx.num_train),
        jnp.zeros([], jnp.float32) if estimated else None,
    )

  def step_fn(rule: SelectFn, on_probabilities: bool):
    def train_step(state: SmallLossState, batch: Batch, info: StepInfo):
      if estimated:
        table = selection.keep_counts_traced(
            1.0 - state.forget_rate * jnp.asarray(ramp, jnp.float32),
            batch.labels.shape[0],
        )
      else:
        table = selection.keep_counts(rates, batch.labels.shape[0])
      fwds = tuple(
          forward(network, learner, batch, on_probabilities)
          for learner in state.learners
      )
      chosen = rule(fwds, batch, info, table)
      learners, values = zip(*(
          update(tx, learner, fwd, w)
          for learner, fwd, w in zip(state.learners, fwds, chosen.weights)
      ))
      selected = chosen.weights[0] > 0
      record = selection.record_selection(
          state.record, batch.indices, info.epoch, chosen.judged, selected
      )
      metrics = {
          "train_loss": values[0],
          "train_running_acc": losses.accuracy(fwds[0].logits, batch.labels),
          "selected": selected,
          **chosen.metrics,
      }
      if ctx.args.optimizer != "sgd":
        # The loop logs the protocol's rate unless the step reports its own.
        metrics["learning_rate"] = learners[0].opt_state.hyperparams[
            "learning_rate"
        ]
      if estimated:
        metrics["forget_rate"] = state.forget_rate
      return state._replace(learners=tuple(learners), record=record), metrics

    return train_step

  def end_epoch(state: SmallLossState, epoch: int, view: EpochView):
    if not estimated or epoch != num_warmup:
      return state
    rate = estimation.estimate_rate(
        view.predict_train(state), view.train_labels,
        ctx.args.forget_rate_source,
    )
    rate = min(rate, 1.0 - 1.0 / ctx.num_classes)
    return state._replace(forget_rate=jnp.asarray(rate, jnp.float32))

  def report(state: SmallLossState) -> dict[str, Any]:
    result = selection.report(state)
    if estimated:
      result.update(
          forget_rate_source=ctx.args.forget_rate_source,
          estimated_tau=float(state.forget_rate),
          true_noise_rate=ctx.noise_rate,
          true_corruption_rate=ctx.corruption_rate,
      )
    return result

  def predict(state: SmallLossState, images: jax.Array) -> jax.Array:
    net = state.learners[0].net
    return network.apply(net.params, net.batch_stats, images, train=False)[0]

  return Method(
      init=init,
      train_step=step_fn(select, on_probabilities),
      predict=predict,
      phases=tuple(
          Phase(p.name, p.num_epochs, step_fn(p.select, p.on_probabilities))
          for p in phases
      ),
      end_epoch=end_epoch if estimated else None,
      report=report,
  )


# The schedule's and the optimizer's defaults (bhanML/Co-teaching main.py).
ARGS = {
    # tau; None = the true fraction of corrupted labels (forget_rate()),
    # the official default (main.py L22, L112-115).
    "forget_rate": schema.Real(None, 0.0, 1.0, high_open=True, optional=True),
    # "oracle": forget_rate (above); "anchor" or "cleanlab": estimated
    # after warmup_epochs (None = 10% of the run) of training on every
    # example (see the module docstring). Not in the official code.
    "forget_rate_source": schema.Str("oracle", estimation.SOURCES),
    "warmup_epochs": schema.Int(None, 1, optional=True),
    # T_k: epochs of the ramp of the forget rate (main.py L24).
    "num_gradual": schema.Int(10, 0),
    # c (main.py L25).
    "exponent": schema.Real(1.0, 0.0, low_open=True),
    # "sgd": the CDR protocol's SGD (fair comparison); "adam": the
    # official Adam (main.py L263).
    "optimizer": schema.Str("sgd", ("sgd", "adam")),
    # Adam's lr (main.py L19) and the epoch its linear decay and beta1 = 0.1
    # start (main.py L33, L119-126); used only with optimizer="adam".
    "adam_learning_rate": schema.Real(1e-3, 0.0, low_open=True),
    "adam_decay_start": schema.Int(80, 0),
}


def default_args() -> ml_collections.ConfigDict:
  return schema.defaults(ARGS)


def check_args(args: ml_collections.ConfigDict) -> None:
  """Raises UserError for arguments that contradict each other."""
  if args.forget_rate_source != "oracle" and args.forget_rate is not None:
    raise errors.UserError(
        f"method_args forget_rate={args.forget_rate} and forget_rate_source="
        f"{args.forget_rate_source!r} contradict each other: set one."
    )


def check_config(
    args: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> None:
  """The checks that need the protocol, before any data loads."""
  estimation.check_source(args, config.num_epochs, args.forget_rate_source)
