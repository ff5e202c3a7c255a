"""What the command lines share: flag parsing and user errors as one line."""

import errno
import os
import sys
from typing import Callable

from absl import app
from absl import flags

from experiments import errors


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with a misspelled --config.<field> as one line.

  ml_collections reports an unknown config field as an AttributeError from
  inside the parser, which absl would show as a traceback.
  """
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"error: {e} (--helpshort lists the flags).")
  except (AttributeError, KeyError) as e:
    message = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
    sys.exit(f"error: unknown config field {message}")


# Filesystem failures a user fixes (a full disk, a read-only or forbidden
# directory): one line too. Writes are atomic, so nothing is left half-written
# and the same command resumes once there is room.
_FILESYSTEM_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
)


def run(main: Callable[[list[str]], None]) -> None:
  """`app.run(main)`, with user errors reported as one line."""

  def guarded(argv):
    try:
      main(argv)
    except errors.UserError as e:
      sys.exit(f"error: {e}")
    except OSError as e:
      if e.errno not in _FILESYSTEM_ERRNOS:
        raise
      sys.exit(f"error: {e}; rerun the same command to resume once fixed.")

  app.run(guarded, flags_parser=_parse_flags)


def check_output_dir(path: str, what: str) -> None:
  """Raises UserError unless `path` is (or can be made) a writable directory.

  Checked before any data is loaded, so a typo costs nothing.
  """
  if os.path.exists(path) and not os.path.isdir(path):
    raise errors.UserError(f"{what} {path} is a file, not a directory.")
  parent = path
  while parent and not os.path.exists(parent):
    parent = os.path.dirname(parent.rstrip(os.sep))
  parent = parent or "."
  if not os.path.isdir(parent):
    raise errors.UserError(f"{what} {path} lies below {parent}, which is a file.")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise errors.UserError(f"{what} {path} is not writable ({parent}).")
