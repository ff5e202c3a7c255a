"""The interface between the training loop and a learning-with-noisy-labels method.

The loop (`experiments/train.py`) owns the data, the compiled steps (jit,
scan, data parallelism), evaluation, checkpoints and metrics. A method owns
its state and its step, and the loop never learns its name:

* ``init(key) -> state``: any pytree - one network or two, optimizer states,
  per-example arrays, a transition matrix. Its structure is fixed for the
  whole run (the checkpoint saves whatever it is).
* ``train_step(state, batch, info) -> (state, metrics)``: one update on one
  batch, traced inside ``jax.jit``. ``metrics`` is a flat dict of scalars;
  the loop reports their mean over the epoch's steps.
* ``predict(state, images) -> logits``: the network that is evaluated.
* ``phases``: optional phases that run before ``train_step`` (a CE warm-up,
  say), each for its number of epochs with its own step function.
* ``end_epoch(state, epoch, view) -> state``: an optional host-side hook
  after every epoch (relabeling, estimating a transition matrix from the
  warm-up model, schedules that need epoch-level statistics).
* ``report(state) -> dict``: optional, what the method learned that a user
  wants to read back at the end (an estimated transition matrix, tau_hat, the
  ids of the examples judged noisy). Numbers and lists go to summary.json
  under ``method_report``; numpy arrays to ``<workdir>/<key>.npy``.

A method is built by its module's ``make(ctx)`` from a :class:`Context`,
which carries what setup resolved once: the network, the learning-rate
schedule, the sizes, and the method's own hyperparameters (``ctx.args``).
"""

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import ml_collections
import numpy as np
import optax

from experiments.models import Network
from experiments.models import NetworkState

State = Any
Metrics = dict[str, jax.Array]


class Batch(NamedTuple):
  """One training batch, as the method sees it.

  Attributes:
    images: float32 ``(B, H, W, C)``, normalized (and augmented where the
      dataset is).
    labels: int32 ``(B,)`` noisy labels.
    indices: int32 ``(B,)`` positions of the examples in the training split,
      for per-example state.
  """

  images: jax.Array
  labels: jax.Array
  indices: jax.Array


class StepInfo(NamedTuple):
  """Where a step is in training (traced int32 scalars, both 0-based)."""

  step: jax.Array
  epoch: jax.Array


class Context(NamedTuple):
  """What a method may know about the run, resolved once in setup.

  Attributes:
    args: the method's own hyperparameters (``config.method_args.<name>``).
    config: the whole run configuration (the protocol's optimizer fields:
      learning_rate, momentum, weight_decay, ...).
    network: the model.
    num_classes: number of classes.
    num_train: size of the training split (for per-example state).
    steps_per_epoch: optimizer steps per epoch.
    learning_rate: the protocol's learning-rate schedule, in steps.
    noise_rate: the nominal noise rate n of the noise model (the paper's
      oracle for CDR's tau, as its reference code passes it).
    corruption_rate: the expected fraction of wrong training labels,
      1 - sum_c pi_c T_cc of the generated noise (``NoisyDataset``): the
      oracle for hyperparameters defined as "the fraction of corrupted
      labels" (the small-loss methods' forget rate). It equals n for
      symmetric and pairflip noise, and is 0.4 n on Fashion-MNIST's
      asymmetric map, where 4 of 10 classes flip.
  """

  args: ml_collections.ConfigDict
  config: ml_collections.ConfigDict
  network: Network
  num_classes: int
  num_train: int
  steps_per_epoch: int
  learning_rate: optax.Schedule
  noise_rate: float
  corruption_rate: float


TrainStep = Callable[[State, Batch, StepInfo], tuple[State, Metrics]]


class Phase(NamedTuple):
  """A stretch of training with its own step function.

  Attributes:
    name: logged in every epoch's record.
    num_epochs: its length (0: skipped).
    train_step: its step function.
    hands_over_best: a preparatory phase (a warm-up) whose official code
      continues from its best model: after its last epoch the loop replaces
      the state by the one of the phase's epoch of best noisy-validation
      accuracy (the first on ties), and the run's reported epoch is chosen
      after it.
    on_end: ``(state, view) -> state``, called once after the phase's last
      epoch (after the hand-over): estimating a transition matrix from the
      warm-up model, starting a new optimizer.
  """

  name: str
  num_epochs: int
  train_step: TrainStep
  hands_over_best: bool = False
  on_end: Callable[[State, "EpochView"], State] | None = None


class EpochView(NamedTuple):
  """What the loop offers ``end_epoch``.

  Attributes:
    train_labels: ``(num_train,)`` noisy labels of the training split.
    predict_train: ``state -> (num_train, C)`` numpy logits of ``predict``
      on every training example, in split order (no augmentation).
  """

  train_labels: np.ndarray
  predict_train: Callable[[State], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Method:
  """A training method: see the module docstring."""

  init: Callable[[jax.Array], State]
  train_step: TrainStep
  predict: Callable[[State, jax.Array], jax.Array]
  phases: tuple[Phase, ...] = ()
  end_epoch: Callable[[State, int, EpochView], State] | None = None
  report: Callable[[State], dict[str, Any]] | None = None
  # The batch size of the final phase (``train_step``), when the method's
  # official code needs another than the protocol's (DMI: det(U) = 0 for a
  # batch that misses a class). None: config.batch_size. Its step sees the
  # protocol's learning-rate schedule in steps of config.batch_size, so a
  # method that sets it uses a rate of its own in that phase.
  train_batch_size: int | None = None

  def all_phases(self, num_epochs: int) -> tuple[Phase, ...]:
    """Every phase of a run of ``num_epochs``, the final one included."""
    final = num_epochs - sum(p.num_epochs for p in self.phases)
    return (*self.phases, Phase("train", max(final, 0), self.train_step))

  def phase_at(self, epoch: int) -> tuple[str, TrainStep]:
    """The (name, step function) of 1-based ``epoch``."""
    first = 1
    for phase in self.phases:
      if epoch < first + phase.num_epochs:
        return phase.name, phase.train_step
      first += phase.num_epochs
    return "train", self.train_step

  def warmup_phases(self) -> tuple[str, ...]:
    """Names of the phases that hand over their best state."""
    return tuple(p.name for p in self.phases if p.hands_over_best)
