"""The benchmark suite writes one table file per backend, holding numbers."""

import re

import jax
import pytest

from experiments.benchmarks import suite

_NUMBER = re.compile(r"\d[\d,]*(\.\d+)?")


def _tables(text: str) -> dict[str, list[list[str]]]:
  """Section title -> the rows (cells) of its Markdown table."""
  tables, title = {}, None
  for line in text.splitlines():
    if line.startswith("## "):
      title = line[3:]
      tables[title] = []
    elif line.startswith("|") and not set(line) <= set("|-: "):
      tables[title].append([c.strip() for c in line.strip("|").split("|")])
  return {t: rows[1:] for t, rows in tables.items()}  # Without the header.


def _check(path):
  with open(path) as f:
    tables = _tables(f.read())
  assert [t.split(":")[0].split(" (")[0] for t in tables] == [
      "Selection", "Training step", "Grain pipeline"]
  for title, rows in tables.items():
    assert rows, title
    for row in rows:
      # Every cell after the first is a measurement (or a ratio of two).
      assert all(_NUMBER.search(cell) for cell in row[1:]), (title, row)
      assert not any("nan" in cell for cell in row), (title, row)


def test_smoke_writes_a_table_per_backend(tmp_path):
  suite.main(["--out", str(tmp_path), "--smoke"])
  _check(tmp_path / f"{jax.default_backend()}.md")


@pytest.mark.slow
def test_quick_writes_a_table_per_backend(tmp_path):
  suite.main(["--out", str(tmp_path), "--quick"])
  _check(tmp_path / f"{jax.default_backend()}.md")
