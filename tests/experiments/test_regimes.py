"""The regime map: its cells, their schedules, and CDR - CE paired by seed."""

import os

import pytest

from experiments import grid as grid_lib
from experiments import regimes


def test_cells_vary_size_schedule_and_model_as_named():
  sizes = {"60k": None, "16k": 16000, "4k": 4000}
  seen = set()
  for cell in regimes.CELLS:
    grid = regimes.cell_grid(cell)
    run = grid_lib.runs(grid)[0]
    config = grid_lib.make_config(grid, run, None, {})
    assert config.num_train_examples == sizes[cell.images], cell
    # The paper's schedule is at 1-based epochs 10 and 20, not scaled to 50.
    expected = (10, 20) if cell.schedule == "paper" else ()
    assert tuple(config.lr_milestones) == expected, cell
    assert config.model == {"MLP": "mlp", "LeNet-5": "lenet5"}[cell.model]
    assert config.num_epochs == 50 and config.dataset == "fashion_mnist"
    seen.add((cell.model, cell.images, cell.schedule))
  assert len(seen) == len(regimes.CELLS) == 7
  # The reused cell is memorize_table's, trained by nothing here.
  parts = regimes.parts("out")
  reused = [p for p in parts if not p[2]]
  assert [p[0].configs for p in reused] == [("fashion_mnist_mlp_memorize",)]
  assert reused[0][1] == regimes.MEMORIZE_TABLE
  # Every cell and the sweep train once, whatever the order.
  assert sorted(regimes.TRAIN_ORDER) == sorted(
      [c.config for c in regimes.CELLS] + ["sweep"])
  assert regimes.SWEEP in [p[0] for p in parts]


def _run(seed, best, memorized):
  return {"summary": {"seed": seed, "test_acc_at_best_val": best,
                      "last_memorization": memorized}, "history": []}


def test_difference_is_paired_by_seed():
  key = ("c", "symmetric", 0.4)
  runs = {
      (*key, "ce"): [_run(0, 0.70, 0.9), _run(1, 0.60, 0.8), _run(2, 0.5, 0.1)],
      (*key, "cdr_ref"): [_run(1, 0.65, 0.7), _run(0, 0.72, 0.5)],
  }
  mean, low, high = regimes.paired_difference(
      runs, key, "cdr_ref", lambda r: r["summary"]["test_acc_at_best_val"]
  )
  assert (mean, low, high) == pytest.approx((0.035, 0.02, 0.05))
  assert regimes.paired_difference(runs, key, "cdr_paper", lambda r: 0) is None


def test_report_of_an_empty_map(tmp_path):
  text = regimes.report(str(tmp_path), reuse_dir=str(tmp_path / "none"))
  assert "| MLP 60k paper / ce | - | - | - |" in text
  assert os.path.exists(tmp_path / "results.md")
  assert not os.path.exists(tmp_path / "regime_map.png")


def test_map_rows_say_which_cells_are_incomplete():
  cell = regimes.CELLS[1]
  assert regimes._row_name({}, cell) == f"{cell.name}\n(not run yet)"
  runs = {(cell.config, t, regimes.RATE, m): [_run(0, 0.5, 0.1),
                                              _run(1, 0.5, 0.1)]
          for t in regimes.NOISES for m in regimes.METHODS}
  assert regimes._row_name(runs, cell) == cell.name
  runs[(cell.config, "instance", regimes.RATE, "ce")].pop()
  assert regimes._row_name(runs, cell) == f"{cell.name}\n(17/18 runs)"
