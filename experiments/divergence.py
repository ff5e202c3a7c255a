"""Divergence stops the run: a non-finite loss or parameters end it with one line.

A run whose loss went to nan would otherwise train to its last epoch and
write a summary that looks like a result. The loop's epoch sums (the
`totals` of every compiled call) are non-finite from the first step with a
non-finite metric on, and parameters that went non-finite make the next
step's loss non-finite. So after dispatching each compiled call, `Watch`
fetches the previous call's sums - a few scalars that are ready, or nearly,
while the new call runs: no new computation is queued and the calls stay
pipelined - and stops the run within one call of the divergence; at the
end of the epoch, before anything of it is saved, it also checks the
parameters with one reduction. The error names the epoch and the
compiled call (its steps) where the run went non-finite. A diverged epoch is
never checkpointed, so the newest checkpoint is the last good one, and no
summary.json is written.

A grid (experiments/reproduce.py) records the error in the run's
`diverged.json` and goes on with its other runs; its tables mark the cell.
"""

import json
import math
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from experiments import atomic
from experiments import errors
from experiments import run_config

MARKER = "diverged.json"


class Diverged(errors.UserError):
  """The run's loss or parameters became non-finite."""

  def __init__(self, message: str, epoch: int, step: int):
    super().__init__(message)
    self.epoch, self.step = epoch, step


@jax.jit
def _all_finite(tree) -> jax.Array:
  """One fused reduction: whether every float of `tree` is finite."""
  leaves = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.stack(leaves).all() if leaves else jnp.array(True)


def _nonfinite_metrics(record: dict[str, Any]) -> list[str]:
  return [f"{k}={v}" for k, v in record.items()
          if isinstance(v, float) and not math.isfinite(v)]


class Watch:
  """Follows one epoch's compiled calls; `after_call` is train_epoch's hook.

  Args:
    then: a further per-call hook (the mid-epoch checkpoint saver), called
      after this one; it must not save a non-finite state (`check_call`).
  """

  def __init__(self, then: Callable | None = None):
    self._then = then
    self._calls: list[tuple[int, int, Any]] = []

  def after_call(self, state, totals, position: dict[str, Any]) -> None:
    if self._calls:
      step, num_steps, previous = self._calls[-1]
      bad = [f"{k}={v}" for k, v in jax.device_get(previous).items()
             if not math.isfinite(float(v))]
      if bad:
        first = step - num_steps + 1
        where = f"steps {first}-{step}" if first < step else f"step {step}"
        raise Diverged(_message(position["epoch"], where,
                                f"non-finite metrics ({', '.join(bad)})"),
                       position["epoch"], step)
    self._calls.append((position["step"], position["num_steps"], totals))
    if self._then is not None:
      self._then(state, totals, position)

  def check(self, state, record: dict[str, Any]) -> None:
    """Raises Diverged if the epoch's metrics or final state are non-finite.

    Args:
      state: the state after the epoch's last call.
      record: the epoch's record (epoch, step and the metrics' means).
    """
    calls, self._calls = self._calls, []
    bad = _nonfinite_metrics(record)
    params_finite = bool(jax.device_get(_all_finite(state)))
    if not bad and params_finite:
      return
    epoch, last = record["epoch"], record["step"]
    # The first call whose sums were non-finite (the epoch's last call, whose
    # sums are the record's, is not among `calls`).
    finite = jax.device_get([_all_finite(t) for _, _, t in calls])
    first, end = next(
        ((step - n + 1, step) for (step, n, _), ok in zip(calls, finite)
         if not ok),
        (calls[-1][0] + 1 if calls else None, last),
    )
    where = (f"by step {end}" if first is None
             else f"steps {first}-{end}" if first < end else f"step {end}")
    what = (f"non-finite metrics ({', '.join(bad)})" if bad
            else "non-finite parameters")
    raise Diverged(_message(epoch, where, what), epoch, end)


def _message(epoch: int, where: str, what: str) -> str:
  kept = (f"the newest checkpoint is epoch {epoch - 1}" if epoch > 1
          else "there is no checkpoint")
  return (f"training diverged in epoch {epoch}, {where}: {what}. Epoch "
          f"{epoch} was not saved ({kept}); try a lower learning rate.")


def check_call(state, totals, position: dict[str, Any]) -> None:
  """Raises Diverged unless `state` and `totals` are finite (before a
  mid-epoch checkpoint saves them; it synchronizes, as the save does)."""
  if bool(jax.device_get(_all_finite((state, totals)))):
    return
  step = position["step"]
  raise Diverged(
      f"training diverged in epoch {position['epoch']}, by step {step}: "
      "non-finite metrics or parameters; nothing after the previous "
      "checkpoint was saved. Try a lower learning rate.",
      position["epoch"], step,
  )


def mark(workdir: str, config: ml_collections.ConfigDict, error: Diverged) -> None:
  """Records a diverged run in its workdir (for a grid's tables)."""
  atomic.write_json(os.path.join(workdir, MARKER), {
      "epoch": error.epoch, "step": error.step, "error": str(error),
      "config": run_config.as_dict(config),
  })


def marked(workdir: str) -> dict[str, Any] | None:
  """The workdir's divergence record, or None."""
  path = os.path.join(workdir, MARKER)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def cell(text: str, diverged: int) -> str:
  """A table cell (the finished seeds' mean, or "-") with its diverged runs."""
  if not diverged:
    return text
  label = "diverged" if diverged == 1 else f"{diverged} diverged"
  return label if text == "-" else f"{text}, {label}"
