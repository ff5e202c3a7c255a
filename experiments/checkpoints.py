"""Checkpoints of a run: its state and its per-epoch metrics, saved together.

The checkpoint (orbax, every epoch) holds the loop's state - whatever pytree
the method keeps - the metrics history so far and the run's configuration.
Restoring first compares the configuration, so a workdir is never resumed
with another model, method or seed.
"""

import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from experiments import errors
from experiments import run_config


def manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  """The checkpoint manager of `workdir`/checkpoints."""
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints"),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
  )


def save(
    checkpoints: ocp.CheckpointManager,
    epoch: int,
    state: Any,
    history: list[dict[str, Any]],
    config: ml_collections.ConfigDict,
) -> None:
  checkpoints.save(
      epoch,
      args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          history=ocp.args.JsonSave(history),
          config=ocp.args.JsonSave(run_config.as_dict(config)),
      ),
  )


def restore(
    checkpoints: ocp.CheckpointManager,
    state: Any,
    config: ml_collections.ConfigDict,
) -> tuple[Any, list[dict[str, Any]]]:
  """The latest checkpoint's state and metrics; (state, []) if there is none.

  Args:
    checkpoints: the run's manager.
    state: a state of the right structure (the freshly initialized one).
    config: the run's configuration.

  Raises:
    ValueError: if the checkpointed run had a different configuration.
  """
  step = checkpoints.latest_step()
  if step is None:
    return state, []
  # The config first: another model or optimizer would not even restore.
  saved = checkpoints.restore(
      step, args=ocp.args.Composite(config=ocp.args.JsonRestore())
  ).config
  if differences := run_config.differences(saved, config):
    raise errors.UserError(
        f"{checkpoints.directory} holds a run with another configuration "
        f"({'; '.join(differences)}). Use another workdir, or delete it."
    )
  restored = checkpoints.restore(
      step,
      args=ocp.args.Composite(
          state=ocp.args.StandardRestore(
              jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
          ),
          history=ocp.args.JsonRestore(),
      ),
  )
  return restored.state, list(restored.history)
