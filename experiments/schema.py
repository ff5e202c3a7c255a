"""Each config field's type and range, declared once beside its default.

A config (``configs/default.py``) and every method's arguments
(``default_args()`` of each module in ``experiments/methods``) are tables of
``Field`` values: the default and what the field accepts. ``defaults`` turns
a table into the ``ConfigDict`` users override; ``check`` walks a config
against its table and raises one ``UserError`` naming the field, its value
and what is allowed. Checks that relate several fields (a warm-up shorter
than the run, say) stay with the code that needs them.
"""

import math
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import ml_collections
from ml_collections import config_dict

from experiments import errors

_PYTHON_TYPES = {"int": int, "real": float, "bool": bool, "str": str,
                 "ints": tuple, "reals": tuple}


class Field(NamedTuple):
  """What one field accepts.

  Attributes:
    default: its default value.
    kind: "int", "real", "bool", "str", "ints" or "reals" (tuples of those).
    low, high: bounds of a number (of each element, for tuples).
    low_open, high_open: whether the bounds are excluded.
    choices: the allowed values of a string (or a callable returning them,
      for registries resolved late).
    optional: whether None is allowed.
    min_len: the fewest elements of a tuple.
    increasing: a tuple's elements must be strictly increasing.
    length: a tuple's exact length.
    backfill: the field was added after runs were saved, and its default
      reproduces what those runs did: a saved configuration without it
      reads as having the default (run_config.upgrade). Without the flag, a
      saved run that lacks the field cannot be resumed or reused.
  """

  default: Any
  kind: str
  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False
  choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None
  optional: bool = False
  min_len: int = 0
  increasing: bool = False
  length: int | None = None
  backfill: bool = False

  def allowed(self) -> str:
    """What the field accepts, in words."""
    if self.kind == "bool":
      text = "True or False"
    elif self.kind == "str":
      text = (f"one of {tuple(_choices(self))}" if self.choices is not None
              else "a string")
    else:
      element = "an integer" if self.kind in ("int", "ints") else "a finite number"
      text = element + _bounds(self)
      if self.kind in ("ints", "reals"):
        size = (f"exactly {self.length}" if self.length is not None
                else f"at least {self.min_len}")
        order = ", strictly increasing" if self.increasing else ""
        text = f"a tuple of {size} elements, each {text}{order}"
    return text + (", or None" if self.optional else "")


def _choices(field: Field) -> tuple[str, ...]:
  return tuple(field.choices() if callable(field.choices) else field.choices)


def _bounds(field: Field) -> str:
  parts = []
  if field.low is not None:
    parts.append(f"{'>' if field.low_open else '>='} {field.low:g}")
  if field.high is not None:
    parts.append(f"{'<' if field.high_open else '<='} {field.high:g}")
  return " " + " and ".join(parts) if parts else ""


def Int(default, low=None, high=None, *, optional=False, **kw) -> Field:  # pylint: disable=invalid-name
  return Field(default, "int", low, high, optional=optional, **kw)


def Real(default, low=None, high=None, *, low_open=False, high_open=False,  # pylint: disable=invalid-name
         optional=False, backfill=False) -> Field:
  return Field(default, "real", low, high, low_open, high_open,
               optional=optional, backfill=backfill)


def Bool(default, *, backfill=False) -> Field:  # pylint: disable=invalid-name
  return Field(default, "bool", backfill=backfill)


def Str(default, choices=None, *, optional=False, backfill=False) -> Field:  # pylint: disable=invalid-name
  return Field(default, "str", choices=choices, optional=optional,
               backfill=backfill)


def Ints(default, low=None, *, min_len=0, increasing=False, optional=False,  # pylint: disable=invalid-name
         length=None, backfill=False) -> Field:
  return Field(default, "ints", low, optional=optional, min_len=min_len,
               increasing=increasing, length=length, backfill=backfill)


def Reals(default, low=None, high=None, *, length=None, optional=False,  # pylint: disable=invalid-name
          backfill=False) -> Field:
  return Field(default, "reals", low, high, optional=optional, length=length,
               backfill=backfill)


def defaults(fields: Mapping[str, Field]) -> ml_collections.ConfigDict:
  """The ConfigDict of the fields' defaults (None ones as typed placeholders)."""
  config = ml_collections.ConfigDict()
  for name, field in fields.items():
    if field.default is None:
      config[name] = config_dict.placeholder(_PYTHON_TYPES[field.kind])
    else:
      config[name] = field.default
  return config


def _number_ok(value, field: Field, integer: bool) -> bool:
  if isinstance(value, bool):
    return False
  if integer and not isinstance(value, int):
    return False
  if not isinstance(value, (int, float)) or not math.isfinite(value):
    return False
  if field.low is not None and (value < field.low or
                                (field.low_open and value == field.low)):
    return False
  if field.high is not None and (value > field.high or
                                 (field.high_open and value == field.high)):
    return False
  return True


def is_valid(value: Any, field: Field) -> bool:
  """Whether `field` accepts `value`."""
  if value is None:
    return field.optional
  if field.kind == "bool":
    return isinstance(value, bool)
  if field.kind == "str":
    return isinstance(value, str) and (
        field.choices is None or value in _choices(field)
    )
  if field.kind in ("int", "real"):
    return _number_ok(value, field, field.kind == "int")
  if not isinstance(value, (tuple, list)):
    return False
  if field.length is not None and len(value) != field.length:
    return False
  if len(value) < field.min_len:
    return False
  if not all(_number_ok(v, field, field.kind == "ints") for v in value):
    return False
  return not field.increasing or all(a < b for a, b in zip(value, value[1:]))


def check(
    config: Mapping[str, Any], fields: Mapping[str, Field], prefix: str = "",
    skip: Iterable[str] = (),
) -> None:
  """Raises UserError for the first field of `config` that `fields` rejects,
  and for fields that `fields` does not know."""
  skip = set(skip)
  unknown = sorted(set(config.keys()) - set(fields) - skip)
  if unknown:
    raise errors.UserError(
        f"unknown config field{'s' * (len(unknown) > 1)} "
        f"{', '.join(prefix + u for u in unknown)}."
    )
  for name, field in fields.items():
    if name in skip:
      continue
    if name not in config:
      raise errors.UserError(f"config field {prefix}{name} is missing.")
    value = config[name]
    if not is_valid(value, field):
      raise errors.UserError(
          f"{prefix}{name}={value!r}: expected {field.allowed()}."
      )
