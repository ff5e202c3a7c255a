"""A results folder's runs as data: one compressed file, `runs.jsonl.gz`.

The first line is the header: the folder's name and what its report is made
of (a grid and its learning-rate milestones, or the regime map); every other
line is one finished run: its key (config, noise type, rate, method, seed),
its summary (which holds the configuration it ran), its per-epoch records
and the arrays its method reported (`<key>.npy` in the workdir); a run that
diverged has its divergence record (`"diverged"`) instead of a summary.

A header may carry a `note`, which the report keeps and prints in the
title of results.md: e.g. the commit that made runs older than the code.

Why JSON lines in gzip: the records are the JSON the runs themselves write
(summary.json, metrics.jsonl), whose keys differ from method to method, so
they go in unchanged, with no schema and no new dependency (Parquet would
need both); `zcat runs.jsonl.gz | head -2` reads it. Runs are written in key
order into a gzip stream with no name or time in its header, so the same
runs are the same bytes: packing a folder again leaves git nothing to
commit, and `reproduce --from` regenerates a folder bit for bit (with the
same zlib and, for the plots, the same matplotlib: .ci/constraints.txt).
"""

import gzip
import io
import json
import os
from typing import Any

import numpy as np

from experiments import atomic
from experiments import errors
from experiments import grid as grid_lib

FILENAME = "runs.jsonl.gz"
_FORMAT = 1

Run = tuple[str, str, float, str, int]  # config, noise type, rate, method, seed


def path(folder: str) -> str:
  return os.path.join(folder, FILENAME)


def read(pack_path: str) -> tuple[dict[str, Any] | None, dict[Run, dict]]:
  """(header, runs by key) of a pack; (None, {}) if there is no such file."""
  if not os.path.exists(pack_path):
    return None, {}
  try:
    with gzip.open(pack_path, "rt", encoding="utf-8") as f:
      header = json.loads(f.readline())
      runs = {}
      for line in f:
        record = json.loads(line)
        runs[_key(record["run"])] = record
  except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
    raise errors.UserError(f"{pack_path} is not a runs pack: {e}") from None
  if not isinstance(header, dict) or header.get("format") != _FORMAT:
    raise errors.UserError(
        f"{pack_path}: expected a runs pack of format {_FORMAT}, got header "
        f"{str(header)[:80]!r}."
    )
  return header, runs


def read_header(pack_path: str) -> dict[str, Any] | None:
  """The header alone (one line, not the runs); None if there is no pack."""
  if not os.path.exists(pack_path):
    return None
  try:
    with gzip.open(pack_path, "rt", encoding="utf-8") as f:
      return json.loads(f.readline())
  except (OSError, EOFError, ValueError) as e:
    raise errors.UserError(f"{pack_path} is not a runs pack: {e}") from None


def write(folder: str, header: dict[str, Any], runs: dict[Run, dict]) -> None:
  """Writes the pack of `folder` atomically; the same runs give the same bytes."""
  lines = [json.dumps({"format": _FORMAT, **header}, sort_keys=True)]
  lines += [json.dumps(runs[k]) for k in sorted(runs)]
  buffer = io.BytesIO()
  with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as f:
    f.write(("\n".join(lines) + "\n").encode("utf-8"))
  os.makedirs(folder, exist_ok=True)
  atomic.write_atomic(path(folder), buffer.getvalue())


def _key(run) -> Run:
  config, noise_type, rate, method, seed = run
  return (config, noise_type, float(rate), method, int(seed))


def read_workdir(run: Run, workdir: str) -> dict | None:
  """The record of the finished run in `workdir`, or None if it has not finished."""
  summary_path = os.path.join(workdir, "summary.json")
  if not os.path.exists(summary_path):
    return None
  with open(summary_path) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    history = [json.loads(line) for line in f]
  arrays = {}
  for key, value in summary.get("method_report", {}).items():
    if value == f"{key}.npy":
      array = np.load(os.path.join(workdir, value), allow_pickle=False)
      arrays[key] = {"dtype": str(array.dtype), "shape": list(array.shape),
                     "values": array.ravel().tolist()}
  record = {"run": list(run), "summary": summary, "history": history}
  if arrays:
    record["arrays"] = arrays
  return record


def array(record: dict, key: str) -> np.ndarray:
  """A method-reported array of a packed run (what `<key>.npy` held)."""
  stored = record["arrays"][key]
  return np.asarray(stored["values"], dtype=stored["dtype"]).reshape(
      stored["shape"]
  )


def grid_header(name: str, grid: grid_lib.Grid, milestones) -> dict[str, Any]:
  """The header of a grid's folder: enough to make its report again."""
  return {
      "name": name,
      "grid": json.loads(json.dumps(grid.__dict__)),
      "milestones": None if milestones is None else list(milestones),
  }


def grid_of(header: dict[str, Any]) -> tuple[grid_lib.Grid, tuple[int, ...] | None]:
  """The grid and milestones that `grid_header` stored."""
  fields = {k: _tuples(v) for k, v in header["grid"].items()}
  milestones = header["milestones"]
  return grid_lib.Grid(**fields), None if milestones is None else tuple(milestones)


def _tuples(value):
  """JSON lists back to the tuples a frozen Grid holds."""
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value
