"""Mid-epoch checkpoints: a run killed inside an epoch resumes at the same batch.

With `config.checkpoint_every_steps`, the loop also saves, every that many
steps, the state, the epoch's running metric sums and the data iterator's
state (grain's `get_state`, JSON) in `checkpoints_mid_epoch/` (the newest
one only, numbered by step). Epoch-end checkpoints stay in `checkpoints/`,
numbered by epoch as before, so workdirs of older runs resume unchanged. A
mid-epoch checkpoint is used only if it lies in the epoch after the newest
epoch-end one.

The sums are float32 and travel as JSON numbers, which round-trip float32
exactly; the resumed epoch's metrics therefore equal an uninterrupted one's.
"""

import os
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from experiments import checkpoints as ckpt
from experiments import divergence


def manager(workdir: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints_mid_epoch"),
      options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
  )


class Saver:
  """Saves every `every` steps; `after_call` is train_epoch's hook."""

  def __init__(self, checkpoints: ocp.CheckpointManager, every: int,
               config: ml_collections.ConfigDict):
    self._checkpoints, self._every, self._config = checkpoints, every, config
    # The epoch-end state the loop keeps beside the step's: set by the loop.
    self.best = None
    self.history: list[dict[str, Any]] = []

  def after_call(self, state, totals, position: dict[str, Any]) -> None:
    """Saves if the call crossed a multiple of `every` steps."""
    step = position["step"]
    if step // self._every == (step - position["num_steps"]) // self._every:
      return
    divergence.check_call(state, totals, position)  # Never save a nan state.
    ckpt.save(self._checkpoints, step, (state, self.best), self.history,
              self._config, position={
                  "epoch": position["epoch"],
                  "step_in_epoch": position["step_in_epoch"],
                  "iterator": position["iterator"](),
                  "totals": {k: np.asarray(v).tolist()
                             for k, v in totals.items()},
              })


def restore(
    checkpoints: ocp.CheckpointManager,
    template: Any,
    config: ml_collections.ConfigDict,
    epochs_done: int,
) -> tuple[Any, dict[str, Any]] | None:
  """(state, resume) of a mid-epoch checkpoint in epoch `epochs_done + 1`."""
  state, _, position = ckpt.restore(checkpoints, template, config)
  if position is None or position["epoch"] != epochs_done + 1:
    return None
  totals = {k: jnp.asarray(v, jnp.float32) for k, v in position["totals"].items()}
  return state, {**position, "totals": totals}
