"""Where each phase of a run trains: its epochs, its batch, its first step.

A method's phases (``methods.Method.all_phases``) run one after the other;
the final one may have its own batch size (``Method.train_batch_size``), so
its steps per epoch differ, and its first step is the sum of the earlier
phases' steps. The loop (`train.py`, `many_runs.py`) compiles one step
function per phase from its plan.
"""

from typing import NamedTuple

import ml_collections

from experiments import errors
from experiments import methods


class PhasePlan(NamedTuple):
  """Where a phase runs: its epochs, its batch and its first step."""

  phase: methods.Phase
  first_epoch: int  # 1-based, inclusive.
  last_epoch: int  # 1-based, inclusive (first_epoch - 1 when empty).
  batch_size: int
  steps_per_epoch: int
  first_step: int  # Steps taken by the earlier phases.
  calls: list[int]  # Steps per call of each call in an epoch.


def _calls(steps_per_call: int, steps_per_epoch: int) -> list[int]:
  chunk = min(steps_per_call, steps_per_epoch)
  remainder = steps_per_epoch % chunk
  return [chunk] * (steps_per_epoch // chunk) + [remainder] * (remainder > 0)


def phase_plans(
    method: methods.Method,
    config: ml_collections.ConfigDict,
    num_train: int,
    num_devices: int,
) -> tuple[PhasePlan, ...]:
  """Every phase of the run with its epochs, batch size and first step."""
  plans = []
  first_epoch, first_step = 1, 0
  phases = method.all_phases(config.num_epochs)
  for i, phase in enumerate(phases):
    batch = config.batch_size
    if i == len(phases) - 1 and method.train_batch_size is not None:
      batch = method.train_batch_size
    spe = num_train // batch
    if spe == 0:
      raise errors.UserError(
          f"phase {phase.name!r}: batch_size={batch} exceeds the {num_train} "
          "training examples."
      )
    if batch % num_devices:
      raise errors.UserError(
          f"phase {phase.name!r}: batch_size={batch} is not divisible by the "
          f"{num_devices} devices."
      )
    last = first_epoch + phase.num_epochs - 1
    plans.append(PhasePlan(
        phase, first_epoch, last, batch, spe, first_step,
        _calls(config.steps_per_call, spe),
    ))
    first_step += phase.num_epochs * spe
    first_epoch = last + 1
  return tuple(plans)


def plan_at(plans: tuple[PhasePlan, ...], epoch: int) -> PhasePlan:
  """The plan of the phase of 1-based `epoch`."""
  return next(p for p in plans if p.first_epoch <= epoch <= p.last_epoch)


def calls_from(plan: PhasePlan, start: int, steps_per_call: int) -> list[int]:
  """Steps per call of the rest of an epoch from its step `start` (a run
  resumed mid-epoch, possibly under another steps_per_call)."""
  if start == 0:
    return plan.calls
  return _calls(steps_per_call, plan.steps_per_epoch - start)
