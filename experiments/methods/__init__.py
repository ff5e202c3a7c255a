"""Learning-with-noisy-labels methods, looked up by name.

Each method lives in its own module and is registered here with its
description, its hyperparameters' defaults (``config.method_args.<name>``)
and its factory ``make(ctx) -> Method`` (see ``base``). Adding a baseline is
a module and one line in ``REGISTRY``; the training loop never changes.
"""

from typing import Callable, NamedTuple

import ml_collections

from experiments import errors
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
  default_args: Callable[[], ml_collections.ConfigDict]
  make: Callable[[Context], Method]
  # Raises ValueError for out-of-range hyperparameters, before any data loads.
  check_args: Callable[[ml_collections.ConfigDict], None] = lambda args: None


REGISTRY: dict[str, Entry] = {
    "ce": Entry(ce.DESCRIPTION, ce.default_args, ce.make),
    "cdr_ref": Entry(
        cdr.DESCRIPTION_REF, cdr.default_args_ref, cdr.make_ref, cdr.check_args
    ),
    "cdr_paper": Entry(
        cdr.DESCRIPTION_PAPER, cdr.default_args_paper, cdr.make_paper,
        cdr.check_args,
    ),
    "mentornet": Entry(
        mentornet.DESCRIPTION, mentornet.default_args, mentornet.make,
        mentornet.check_args,
    ),
    "coteaching": Entry(
        coteaching.DESCRIPTION, coteaching.default_args, coteaching.make,
        coteaching.check_args,
    ),
    "coteaching_plus": Entry(
        coteaching_plus.DESCRIPTION, coteaching_plus.default_args,
        coteaching_plus.make, coteaching_plus.check_args,
    ),
    "gce": Entry(gce.DESCRIPTION, gce.default_args, gce.make, gce.check_args),
    "apl": Entry(apl.DESCRIPTION, apl.default_args, apl.make, apl.check_args),
    "dmi": Entry(dmi.DESCRIPTION, dmi.default_args, dmi.make, dmi.check_args),
    "forward": Entry(
        forward.DESCRIPTION, forward.default_args, forward.make,
        forward.check_args,
    ),
    "t_revision": Entry(
        t_revision.DESCRIPTION, t_revision.default_args, t_revision.make,
        t_revision.check_args,
    ),
    "joint": Entry(
        joint.DESCRIPTION, joint.default_args, joint.make, joint.check_args
    ),
    "s2e": Entry(s2e.DESCRIPTION, s2e.default_args, s2e.make, s2e.check_args),
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
  """The chosen method's hyperparameters, checked."""
  entry = get(config.method)
  args = config.method_args.get(config.method, ml_collections.ConfigDict())
  entry.check_args(args)
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
