"""Checkpoints of a run: its state and its per-epoch metrics, saved together.

The checkpoint (orbax, every epoch) holds the loop's state - whatever pytree
the method keeps - the metrics history so far and the run's configuration.
Restoring first compares the configuration, so a workdir is never resumed
with another model, method or seed.

A checkpoint that cannot be read back (a disk that filled up, a copy cut
short, files deleted) is moved aside to `checkpoints_damaged/` with a
warning line, and the previous one is restored; with none usable the run
stops with one line. The manager holds the workdir's lock
(experiments/workdir_lock.py) while it is open: one writer per workdir.
"""

import contextlib
import os
import sys
import time
from typing import Any, Iterator

import jax
import ml_collections
import orbax.checkpoint as ocp

from experiments import errors
from experiments import run_config
from experiments import workdir_lock

DAMAGED = "checkpoints_damaged"


@contextlib.contextmanager
def manager(workdir: str, max_to_keep: int) -> Iterator[ocp.CheckpointManager]:
  """The checkpoint manager of `workdir`/checkpoints, with the workdir locked.

  Raises:
    UserError: if another process holds the workdir.
  """
  with workdir_lock.hold(workdir, primary=jax.process_index() == 0):
    with ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True
        ),
    ) as checkpoints:
      yield checkpoints


def save(
    checkpoints: ocp.CheckpointManager,
    epoch: int,
    state: Any,
    history: list[dict[str, Any]],
    config: ml_collections.ConfigDict,
    position: dict[str, Any] | None = None,
) -> None:
  """Saves checkpoint `epoch` (the grain path numbers them by step instead).

  `position` (JSON) says where in an epoch a mid-epoch checkpoint was taken:
  the epoch, its steps done and the data iterator's state.
  """
  items = dict(
      state=ocp.args.StandardSave(state),
      history=ocp.args.JsonSave(history),
      config=ocp.args.JsonSave(run_config.as_dict(config)),
  )
  if position is not None:
    items["position"] = ocp.args.JsonSave(position)
  checkpoints.save(epoch, args=ocp.args.Composite(**items))


def restore(
    checkpoints: ocp.CheckpointManager,
    state: Any,
    config: ml_collections.ConfigDict,
) -> tuple[Any, list[dict[str, Any]], dict[str, Any] | None]:
  """The newest readable checkpoint's state, metrics and mid-epoch position
  (or None); (state, [], None) if there is none.

  Newer checkpoints that cannot be read are moved to `checkpoints_damaged/`
  beside `checkpoints/`, each with a warning line on stderr.

  Args:
    checkpoints: the run's manager.
    state: a state of the right structure (the freshly initialized one).
    config: the run's configuration.

  Raises:
    UserError: if the checkpointed run had a different configuration, or
      no checkpoint can be read (then nothing is moved).
  """
  steps = sorted(checkpoints.all_steps(), reverse=True)
  damaged = []
  for step in steps:
    try:
      restored = _read(checkpoints, step, state, config)
    except _Damaged as e:
      damaged.append((step, e))
      continue
    for bad_step, error in damaged:
      _set_aside(checkpoints, bad_step, error, step)
    return restored
  if damaged:
    step, error = damaged[0]
    raise errors.UserError(
        f"no checkpoint in {checkpoints.directory} can be read (the newest, "
        f"{step}: {error}); move the workdir aside to start the run over."
    )
  return state, [], None


class _Damaged(Exception):
  """A checkpoint's files cannot be read back (the message says why)."""


def _read(checkpoints, step, state, config):
  """Checkpoint `step`'s (state, history, position).

  Raises:
    _Damaged: if its files are missing, truncated or corrupt. Orbax and
      TensorStore report these as JSON errors, ValueError, FileNotFoundError
      or a bare Exception, hence the broad catch around the reads (the
      configuration check, a user error, stays outside it).
  """
  try:
    saved = checkpoints.restore(
        step, args=ocp.args.Composite(config=ocp.args.JsonRestore())
    ).config
  except Exception as e:  # pylint: disable=broad-exception-caught
    raise _Damaged(_first_line(e)) from e
  # The config first: another model or optimizer would not even restore.
  if differences := run_config.differences(
      saved, config, source=str(checkpoints.directory)
  ):
    raise errors.UserError(
        f"{checkpoints.directory} holds a run with another configuration "
        f"({'; '.join(differences)}). Use another workdir, or delete it."
    )
  try:
    restored = checkpoints.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(
                jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
            ),
            history=ocp.args.JsonRestore(),
        ),
    )
    position = None
    if "position" in checkpoints.item_metadata(step):
      position = checkpoints.restore(
          step, args=ocp.args.Composite(position=ocp.args.JsonRestore())
      ).position
  except Exception as e:  # pylint: disable=broad-exception-caught
    raise _Damaged(_first_line(e)) from e
  return restored.state, list(restored.history), position


def _first_line(error: Exception) -> str:
  # TensorStore appends its whole spec to the message.
  text = (str(error).strip().splitlines() or [""])[0]
  text = f"{type(error).__name__}: {text}"
  return text if len(text) <= 200 else text[:197] + "..."


def _set_aside(checkpoints, step: int, error: _Damaged, usable: int) -> None:
  """Moves damaged checkpoint `step` out of the manager's sight (kept, for a
  look; never deleted) and says so."""
  directory = os.fspath(checkpoints.directory)
  aside = os.path.join(os.path.dirname(directory), DAMAGED)
  os.makedirs(aside, exist_ok=True)
  target = os.path.join(aside, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
  os.rename(os.path.join(directory, str(step)), target)
  checkpoints.reload()
  print(
      f"warning: checkpoint {step} in {directory} cannot be read ({error}); "
      f"moved to {target}, resuming from checkpoint {usable}.",
      file=sys.stderr, flush=True,
  )
