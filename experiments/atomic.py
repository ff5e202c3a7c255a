"""Files that readers see whole or not at all."""

import io
import json
import os
import tempfile
from typing import Any

import jax
import numpy as np


def write_atomic(path: str, text: str | bytes) -> None:
  """Writes `text` to `path` so readers see the old or the new content, never half.

  The text goes to a unique temporary file in the same directory, is flushed
  to disk, and replaces `path` in one rename; a kill at any moment leaves
  either the old file or the new one (and at worst a stray temporary file).
  In a multi-process run only process 0 writes: the others compute the
  same files (experiments/distributed.py).
  """
  if jax.process_index() != 0:
    return
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(
      dir=directory, prefix=".tmp-", suffix=os.path.basename(path)
  )
  try:
    with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_json(path: str, value: Any) -> None:
  """`value` as indented JSON, atomically."""
  write_atomic(path, json.dumps(value, indent=2) + "\n")


def write_jsonl(path: str, records: list[dict[str, Any]]) -> None:
  """One JSON object per line, atomically."""
  write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def write_npy(path: str, array) -> None:
  """A numpy array as a .npy file, atomically."""
  buffer = io.BytesIO()
  np.save(buffer, array, allow_pickle=False)
  write_atomic(path, buffer.getvalue())
