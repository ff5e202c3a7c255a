"""One writer per directory: an OS file lock held while a run or a grid writes.

Two processes writing the same workdir would interleave checkpoints and
metrics, and the later one's resumption would read the other's half-finished
epoch. `hold(directory)` takes an exclusive `fcntl.flock` on
`directory/.lock` for the life of the `with` block; a second holder fails at
once with one line naming the first one's pid.

The kernel drops a flock when its process dies, so a SIGKILL or a power cut
never leaves a stale lock: only the flock counts, never the file's presence
or the pid written in it (older versions of this code left `.lock` files
with dead pids in committed run folders; they are free). The file itself is
never deleted: removing it while another process waits on it would let two
processes lock two different files of the same name.
"""

import contextlib
import errno
import fcntl
import os
from typing import Iterator

from experiments import errors

LOCK_NAME = ".lock"
# Directories this process holds: a nested `hold` of one of them is a no-op,
# so the command line can lock before loading data and the training loop
# (which library callers reach directly) locks again.
_HELD: set[str] = set()


def _holder(fd: int) -> str:
  """The pid the current holder wrote, or a placeholder if it has not yet."""
  text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
  return text if text.isdigit() else "unknown (starting)"


@contextlib.contextmanager
def hold(
    directory: str, what: str = "workdir", primary: bool = True
) -> Iterator[None]:
  """Holds the exclusive lock of `directory` (created if needed).

  Args:
    directory: the run's workdir or the grid's results folder.
    what: how the error line names it ("--workdir", "--results_dir", ...).
    primary: whether this process writes for the run; in a multi-process
      run only process 0 does (and holds the lock), the others pass False.

  Raises:
    UserError: if another process holds it (this process may nest holds).
  """
  os.makedirs(directory, exist_ok=True)
  key = os.path.realpath(directory)
  if not primary or key in _HELD:  # This process holds it already (main, then the loop).
    yield
    return
  path = os.path.join(directory, LOCK_NAME)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
        raise
      raise errors.UserError(
          f"{what} {directory} is in use by process {_holder(fd)} (it holds "
          f"{path}); wait for it to finish, or stop it first."
      ) from None
    # For the error line of the next one; the lock itself is the flock.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD.add(key)
    try:
      yield
    finally:
      _HELD.discard(key)
  finally:
    os.close(fd)  # Releases the flock.
