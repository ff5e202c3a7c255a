"""Checks a run's configuration and says when two runs are the same run.

A run is identified by its configuration with only the chosen method's
``method_args`` (changing another method's defaults changes nothing about
this run), minus the fields that only change how it executes.
"""

import json
from typing import Any

import ml_collections

from experiments import errors
from experiments import methods
from experiments import schema
from experiments.configs import default
from experiments.data import specs

# Fields that may differ between a checkpointed run and its resumption: they
# change how the run executes or where data is read, not what it computes.
# num_epochs is not one of them: methods derive phases and schedules from it.
RESUMABLE_CHANGES = frozenset({
    "stop_after_epochs",
    "log_progress",
    "checkpoints_to_keep",
    "data_source",
    "data_dir",
    "num_devices",
    "eval_batch_size",
    "steps_per_call",
})


def as_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The run's identity: the config as JSON-able values, one method's args."""
  values = json.loads(json.dumps(config.to_dict()))
  values["method_args"] = values["method_args"].get(config.method, {})
  return values


def _json(value: Any) -> Any:
  return json.loads(json.dumps(value))


def upgrade(
    saved: dict[str, Any], config: ml_collections.ConfigDict,
    source: str = "the saved run",
) -> dict[str, Any]:
  """A run's saved configuration, read by this version of the code.

  A field added after the run was saved counts as its default when the
  field is declared `backfill=True` (its default is the behaviour from
  before it existed: experiments/schema.py) or may change on resumption
  anyway (RESUMABLE_CHANGES); every method argument is read that way (see
  methods.Entry). Anything else is one line naming the fields.

  Args:
    saved: the saved configuration (a checkpoint's, a summary's).
    config: this run's configuration (its fields are the ones known here).
    source: where `saved` comes from, for the message.

  Raises:
    UserError: if `saved` has fields this version does not know, or lacks
      fields without a backward-compatible default.
  """
  current = as_dict(config)
  unknown = sorted(saved.keys() - current.keys())
  missing = sorted(
      k for k in current.keys() - saved.keys()
      if k not in RESUMABLE_CHANGES
      and not (k in default.FIELDS and default.FIELDS[k].backfill)
  )
  method_args = saved.get("method_args")
  if isinstance(method_args, dict) and saved.get("method") == config.method:
    known = methods.get(config.method).fields
    unknown += sorted(f"method_args.{k}" for k in method_args.keys() - known)
  if unknown or missing:
    parts = ([f"has fields this version does not know ({', '.join(unknown)})"]
             * bool(unknown)
             + [f"lacks fields this version needs ({', '.join(missing)})"]
             * bool(missing))
    raise errors.UserError(
        f"{source} was written by another version of this code: its "
        f"configuration {' and '.join(parts)}. Resume it with that version, "
        "or use another workdir."
    )
  backfilled = {
      k: current[k] if k in RESUMABLE_CHANGES else _json(default.FIELDS[k].default)
      for k in current.keys() - saved.keys() if k in default.FIELDS
  }
  saved = {**backfilled, **saved}
  if isinstance(method_args, dict) and saved.get("method") == config.method:
    defaults = _json(methods.get(config.method).default_args().to_dict())
    saved["method_args"] = {**defaults, **method_args}
  return saved


def differences(
    saved: dict[str, Any], config: ml_collections.ConfigDict,
    source: str = "the saved run",
) -> list[str]:
  """Fields (outside RESUMABLE_CHANGES) whose values differ, as strings.

  `saved` is first read by this version (`upgrade`): a field or method
  argument added since counts as its default, so a run saved before it
  existed is the same run.

  Raises:
    UserError: see `upgrade`.
  """
  current = as_dict(config)
  saved = upgrade(saved, config, source)
  return [
      f"{k}: {saved.get(k)!r} -> {current.get(k)!r}"
      for k in sorted(saved.keys() | current.keys())
      if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k)
  ]


def validate(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
  """Raises UserError, naming the field, for a config that cannot run.

  The chosen method checks its own ``method_args``. Nothing here starts JAX,
  so the command lines call it before anything else.

  Args:
    config: the experiment configuration.
    num_devices: number of devices the run will use (batch sizes must be
      divisible by it).
  """
  # Every field by its declared rule (configs/default.py, each method's
  # ARGS), then what relates fields to each other.
  schema.check(config, default.FIELDS, skip=("method_args",))
  specs.canonical_name(config.dataset)  # Raises for unknown names.
  methods.args_of(config)
  for field in ("batch_size", "eval_batch_size"):
    if config[field] % num_devices:
      raise errors.UserError(
          f"{field}={config[field]} must be divisible by the number of "
          f"devices ({num_devices})."
      )
