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


def differences(saved: dict[str, Any], config: ml_collections.ConfigDict) -> list[str]:
  """Fields (outside RESUMABLE_CHANGES) whose values differ, as strings.

  A method argument that `saved` lacks counts as its default: an argument
  added to a method defaults to the method's former behaviour, so a run
  saved before it existed is the same run.
  """
  current = as_dict(config)
  if isinstance(saved.get("method_args"), dict) and saved.get("method") == config.method:
    defaults = json.loads(json.dumps(methods.get(config.method).default_args().to_dict()))
    saved = {**saved, "method_args": {**defaults, **saved["method_args"]}}
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
