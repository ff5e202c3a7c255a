"""Prints the exact installed versions of everything `optax_cdr[test]` needs.

  python .ci/freeze.py > .ci/constraints.txt

Walks the installed distributions' requirements from optax_cdr with its
`experiments` and `test` extras, so the pins cover what the suite imports
and nothing else the machine happens to have (a plain `pip freeze` would
also pin torch, jupyter, ...).
"""

import importlib.metadata as metadata
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

_ROOT = "optax_cdr"
_EXTRAS = ("experiments", "test")


def _applies(requirement: Requirement, extras) -> bool:
  if requirement.marker is None:
    return True
  return any(requirement.marker.evaluate({"extra": e}) for e in ("", *extras))


def closure(root: str, extras) -> dict[str, metadata.Distribution]:
  """Installed distributions that `root[extras]` needs, by canonical name."""
  found: dict[str, metadata.Distribution] = {}
  visited = set()  # (name, extras): a package is walked again for new extras.
  todo = [(root, tuple(extras))]
  while todo:
    name, wanted = todo.pop()
    key = canonicalize_name(name)
    if (key, wanted) in visited:
      continue
    visited.add((key, wanted))
    try:
      found[key] = dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
      continue  # A requirement for another platform or Python.
    for text in dist.requires or []:
      requirement = Requirement(text)
      if _applies(requirement, wanted):
        todo.append((requirement.name, tuple(requirement.extras)))
  return found


def main() -> None:
  found = closure(_ROOT, _EXTRAS)
  print(f"# Exact versions of {_ROOT}[{','.join(_EXTRAS)}]'s dependencies "
        f"that the suite and the committed results were measured with "
        f"(Python {sys.version_info.major}.{sys.version_info.minor}); "
        "regenerate with: python .ci/freeze.py > .ci/constraints.txt")
  for key in sorted(found):
    if key != canonicalize_name(_ROOT):
      print(f"{found[key].metadata['Name']}=={found[key].version}")


if __name__ == "__main__":
  main()
