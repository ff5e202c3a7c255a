"""Learning-with-noisy-labels methods, looked up by name.

Each method lives in its own module and is registered here with its
description, its hyperparameters' defaults (``config.method_args.<name>``)
and its factory ``make(ctx) -> Method`` (see ``base``). Adding a baseline is
a module and one line in ``REGISTRY``; the training loop never changes.
"""

from typing import Callable, NamedTuple

import ml_collections

from experiments import errors
from experiments import schema
from experiments.methods import apl
from experiments.methods import cdr
from experiments.methods import ce
from experiments.methods import coteaching
from experiments.methods import coteaching_plus
from experiments.methods import dmi
from experiments.methods import forward
from experiments.methods import gce
from experiments.methods import joint
from experiments.methods import mentornet
from experiments.methods import s2e
from experiments.methods import self_paced
from experiments.methods import t_revision
from experiments.methods.base import Batch
from experiments.methods.base import Context
from experiments.methods.base import EpochView
from experiments.methods.base import Method
from experiments.methods.base import Network
from experiments.methods.base import NetworkState
from experiments.methods.base import Phase
from experiments.methods.base import StepInfo


class Entry(NamedTuple):
  """A registered method: one line of ``--help`` and how to build it."""

  description: str
  # Each argument's default and what it accepts (experiments/schema.py). A
  # new argument must default to the method's former behaviour:
  # run_config.differences reads an argument missing from a saved run (one
  # saved before the argument existed) as its default.
  fields: dict[str, schema.Field]
  make: Callable[[Context], Method]
  # Raises UserError for arguments that contradict each other, before any
  # data loads (each one's own range is in `fields`).
  check_args: Callable[[ml_collections.ConfigDict], None] = lambda args: None
  # Raises ValueError for hyperparameters that do not fit the rest of the
  # config (epochs, batch size, dataset): (args, config) -> None.
  check_config: Callable[
      [ml_collections.ConfigDict, ml_collections.ConfigDict], None
  ] = lambda args, config: None

  def default_args(self) -> ml_collections.ConfigDict:
    return schema.defaults(self.fields)


def _entry(module) -> Entry:
  """The entry of a module that holds one method."""
  return Entry(
      module.DESCRIPTION, module.ARGS, module.make,
      getattr(module, "check_args", Entry._field_defaults["check_args"]),
      getattr(module, "check_config", Entry._field_defaults["check_config"]),
  )


REGISTRY: dict[str, Entry] = {
    "ce": _entry(ce),
    "cdr_ref": Entry(
        cdr.DESCRIPTION_REF, cdr.ARGS_REF, cdr.make_ref,
        check_config=cdr.check_config,
    ),
    "cdr_paper": Entry(
        cdr.DESCRIPTION_PAPER, cdr.ARGS_PAPER, cdr.make_paper,
        check_config=cdr.check_config,
    ),
    **{
        module.__name__.rsplit(".", 1)[1]: _entry(module)
        for module in (
            mentornet, coteaching, coteaching_plus, gce, apl, dmi, forward,
            t_revision, joint, s2e, self_paced,
        )
    },
}


def get(name: str) -> Entry:
  """The registered method `name`; raises ValueError naming the valid ones."""
  try:
    return REGISTRY[name]
  except KeyError:
    raise errors.UserError(
        f"unknown method {name!r}; expected one of {tuple(REGISTRY)}."
    ) from None


def args_of(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The chosen method's hyperparameters, checked alone and against the
  rest of the config."""
  entry = get(config.method)
  args = config.method_args.get(config.method, ml_collections.ConfigDict())
  schema.check(args, entry.fields, prefix=f"method_args.{config.method}.")
  entry.check_args(args)
  entry.check_config(args, config)
  return args


def default_args() -> ml_collections.ConfigDict:
  """Every registered method's hyperparameters, one sub-dict per method."""
  return ml_collections.ConfigDict(
      {name: entry.default_args() for name, entry in REGISTRY.items()}
  )


__all__ = (
    "Batch", "Context", "EpochView", "Method", "Network", "NetworkState",
    "Phase", "StepInfo", "REGISTRY", "Entry", "get", "args_of", "default_args",
)
