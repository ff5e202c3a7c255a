"""When does CDR help? The regime map on Fashion-MNIST.

CE against both CDR flavours at 40% symmetric, pairflip and instance noise,
2 seeds, 50 epochs, the paper's protocol, in cells that vary one choice at a
time: the data size (4,000 / 16,000 / all 60,000 images), the
learning-rate schedule (the paper's x0.1 from 1-based epochs 10 and 20, or
constant) and the model (the 1.86M-weight MLP, LeNet-5). A last part sweeps
`cdr_paper`'s lam and `cdr_ref`'s tau in the 4,000-image constant-rate
regime. Cells are shown in `CELLS` order (the most informative first) and
train in `TRAIN_ORDER` (cheapest first, by measured cost); the
4,000-image constant-rate cell and the sweep's lam = 1e-3 / tau = n points
are `memorize_table`'s runs, read from its folder, never rerun.

  python -m experiments.reproduce --grid=regimes --results_dir=experiments/results/regimes

writes, besides the runs, results.md, regime_map.png (CDR - CE per cell and
noise, paired by seed) and curves_mlp_60k.png.
"""

import io
import os
import statistics
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from experiments import atomic
from experiments import grid as grid_lib
from experiments import packs
from experiments import plots
from experiments import report as report_lib

NOISES = ("symmetric", "pairflip", "instance")
RATE = 0.4
METHODS = ("ce", "cdr_ref", "cdr_paper")
SEEDS = (0, 1)
NUM_EPOCHS = 50
MEMORIZE_TABLE = os.path.join("experiments", "results", "memorize_table")


class Cell(NamedTuple):
  """One regime: a config module and what it varies."""

  config: str
  model: str
  images: str
  schedule: str
  reused: bool = False  # Its runs are memorize_table's.

  @property
  def name(self) -> str:
    return f"{self.model} {self.images} {self.schedule}"


CELLS = (
    Cell("fashion_mnist_mlp", "MLP", "60k", "paper"),
    Cell("fashion_mnist_lenet", "LeNet-5", "60k", "paper"),
    Cell("fashion_mnist_mlp_16k", "MLP", "16k", "paper"),
    Cell("fashion_mnist_mlp_16k_constant", "MLP", "16k", "constant"),
    Cell("fashion_mnist_mlp_4k", "MLP", "4k", "paper"),
    Cell("fashion_mnist_mlp_memorize", "MLP", "4k", "constant", reused=True),
    Cell("fashion_mnist_mlp_constant", "MLP", "60k", "constant"),
)
# The sweep's new points; lam = 1e-3 and tau = n are the defaults, run by
# memorize_table.
SWEEP_METHODS = (
    "cdr_paper:lam=1e-05", "cdr_paper:lam=0.0001", f"cdr_ref:tau={1.5 * RATE:g}",
)


def cell_grid(cell: Cell) -> grid_lib.Grid:
  return grid_lib.Grid(
      (cell.config,), NOISES, (RATE,), METHODS, SEEDS, NUM_EPOCHS,
      scale_milestones=False,
  )


SWEEP = grid_lib.Grid(
    ("fashion_mnist_mlp_memorize",), NOISES, (RATE,), SWEEP_METHODS, SEEDS,
    NUM_EPOCHS,
)


# The order the parts train in: the first cell (done), then cheapest first.
# Measured here, one 50-epoch run on 60,000 images takes 9-10 minutes (MLP
# 10.9 s/epoch, LeNet-5 11.7 s/epoch), on 16,000 about 2.5 and on 4,000 under
# 1: the whole map is about 10 hours, twice the 5. In `CELLS` order
# the 3-hour LeNet-5 cell would hold back the sweep and three cells that
# together take 2; this order finishes them first.
TRAIN_ORDER = (
    "fashion_mnist_mlp", "sweep", "fashion_mnist_mlp_4k",
    "fashion_mnist_mlp_16k", "fashion_mnist_mlp_16k_constant",
    "fashion_mnist_lenet", "fashion_mnist_mlp_constant",
    "fashion_mnist_mlp_memorize",
)


def parts(results_dir: str, reuse_dir: str = MEMORIZE_TABLE):
  """(grid, its results folder, whether this grid trains it), in
  `TRAIN_ORDER`."""
  named = {
      c.config: (cell_grid(c), reuse_dir if c.reused else results_dir,
                 not c.reused)
      for c in CELLS
  }
  named["sweep"] = (SWEEP, results_dir, True)
  return [named[name] for name in TRAIN_ORDER]


def load(results_dir: str, reuse_dir: str = MEMORIZE_TABLE) -> dict:
  """Every finished run of the map, by (config, noise, rate, method)."""
  runs = {}
  for grid, folder, _ in parts(results_dir, reuse_dir):
    runs.update(report_lib.load_runs(grid, folder))
  # The sweep's defaults, from memorize_table.
  reused = grid_lib.Grid(
      ("fashion_mnist_mlp_memorize",), NOISES, (RATE,), METHODS, SEEDS,
      NUM_EPOCHS,
  )
  runs.update(report_lib.load_runs(reused, reuse_dir))
  return runs


def _by_seed(found, metric) -> dict[int, float]:
  return {r["summary"]["seed"]: metric(r) for r in found
          if metric(r) is not None}


def _best(run):
  return run["summary"]["test_acc_at_best_val"]


def _last(run):
  return run["summary"]["last_test_acc"]


def _memorized(run):
  return run["summary"]["last_memorization"]


def wall_minutes(run) -> float:
  return sum(r["epoch_time_s"] for r in run["history"]) / 60


def paired_difference(runs, key, method, metric):
  """CDR - CE per seed of both: (mean, min, max), or None."""
  ce = _by_seed(runs.get((*key, "ce"), []), metric)
  other = _by_seed(runs.get((*key, method), []), metric)
  diffs = [other[s] - ce[s] for s in sorted(ce.keys() & other.keys())]
  if not diffs:
    return None
  return statistics.fmean(diffs), min(diffs), max(diffs)


def _cell(values) -> str:
  return report_lib._mean_std(values)  # pylint: disable=protected-access


def _noise_header(first: str) -> str:
  names = [plots.setting_name(None, t, RATE, False) for t in NOISES]
  return (f"| {first} | " + " | ".join(names) + " |\n"
          + "|---|" + "---|" * len(NOISES) + "\n")


def _metric_table(runs, metric) -> str:
  lines = [_noise_header("cell / method")]
  for cell in CELLS:
    for m in METHODS:
      values = [
          _cell(list(_by_seed(runs.get((cell.config, t, RATE, m), []), metric)
                     .values()))
          for t in NOISES
      ]
      lines.append(f"| {cell.name} / {m} | " + " | ".join(values) + " |\n")
  return "".join(lines)


def _difference_table(runs, metric) -> str:
  lines = [_noise_header("cell / flavour")]
  for cell in CELLS:
    for m in METHODS[1:]:
      values = []
      for t in NOISES:
        found = paired_difference(runs, (cell.config, t, RATE), m, metric)
        values.append("-" if found is None else
                      f"{100 * found[0]:+.2f} [{100 * found[1]:+.2f}, "
                      f"{100 * found[2]:+.2f}]")
      lines.append(f"| {cell.name} / {m} | " + " | ".join(values) + " |\n")
  return "".join(lines)


def _time_table(runs) -> str:
  lines = ["| cell | runs | minutes per run (mean) | s/epoch (median) |\n",
           "|---|---|---|---|\n"]
  for cell in CELLS:
    found = [r for t in NOISES for m in METHODS
             for r in runs.get((cell.config, t, RATE, m), [])]
    if not found:
      lines.append(f"| {cell.name} | 0 | - | - |\n")
      continue
    minutes = statistics.fmean(wall_minutes(r) for r in found)
    per_epoch = statistics.median(
        r["summary"]["seconds_per_epoch_median"] for r in found
    )
    lines.append(f"| {cell.name} | {len(found)} | {minutes:.1f} | "
                 f"{per_epoch:.1f} |\n")
  return "".join(lines)


def _sweep_section(runs) -> str:
  config = SWEEP.configs[0]
  variants = ("ce", "cdr_ref", SWEEP_METHODS[2], "cdr_paper",
              *SWEEP_METHODS[:2])
  labels = {"cdr_ref": f"cdr_ref:tau={RATE} (n)", "cdr_paper": "cdr_paper:lam=0.001"}
  lines = [
      "\n## The split constant and lam (MLP 4k constant)\n\n"
      "Test accuracy at the best noisy-validation epoch; in brackets the mean "
      "best noisy-validation accuracy, the only number used to choose.\n\n",
      _noise_header("method"),
  ]
  for v in variants:
    cells = []
    for t in NOISES:
      found = runs.get((config, t, RATE, v), [])
      val = [r["summary"]["best_val_acc"] for r in found]
      cells.append(_cell([_best(r) for r in found])
                   + (f" ({100 * statistics.fmean(val):.2f})" if val else ""))
    lines.append(f"| {labels.get(v, v)} | " + " | ".join(cells) + " |\n")
  lines.append("\nPicked on noisy validation, per noise: ")
  picks = []
  for t in NOISES:
    scores = {
        v: statistics.fmean(r["summary"]["best_val_acc"] for r in found)
        for v in variants[3:]
        if (found := runs.get((config, t, RATE, v)))
    }
    if not scores:
      continue
    pick = max(scores, key=scores.get)
    test = statistics.fmean(_best(r) for r in runs[(config, t, RATE, pick)])
    ce = [_best(r) for r in runs.get((config, t, RATE, "ce"), [])]
    versus = f", CE {100 * statistics.fmean(ce):.2f}" if ce else ""
    picks.append(f"{plots.setting_name(None, t, RATE, False)}: "
                 f"{labels.get(pick, pick)} (test {100 * test:.2f}{versus})")
  lines.append("; ".join(picks) + ".\n" if picks else "no runs yet.\n")
  return "".join(lines)


def markdown(runs) -> str:
  return "".join([
      f"Fashion-MNIST, 40% noise, {', '.join(METHODS)}, seeds {list(SEEDS)}, "
      f"{NUM_EPOCHS} epochs; 'paper' = lr x0.1 from 1-based epochs 10 and 20. "
      "Cells: mean+-sample std over seeds, in %; '-' = not run yet. The MLP "
      "4k constant cell and the sweep's lam=0.001 / tau=n rows are "
      f"memorize_table's runs ({MEMORIZE_TABLE}).\n",
      "\n## CDR - CE at the best noisy-validation epoch (points, paired by "
      "seed: mean [min, max])\n\n", _difference_table(runs, _best),
      "\n## CDR - CE in memorization at the last epoch (points)\n\n",
      _difference_table(runs, _memorized),
      "\n## Test accuracy at the best noisy-validation epoch\n\n",
      _metric_table(runs, _best),
      "\n## Test accuracy at the last epoch\n\n", _metric_table(runs, _last),
      "\n## Memorization at the last epoch\n\n", _metric_table(runs, _memorized),
      _sweep_section(runs),
      "\n## Wall time (2 CPU cores, one run at a time)\n\n", _time_table(runs),
  ])


def _row_name(runs, cell: Cell) -> str:
  """The cell's name, with how many of its runs are done unless all are."""
  expected = len(NOISES) * len(METHODS) * len(SEEDS)
  done = sum(len(runs.get((cell.config, t, RATE, m), []))
             for t in NOISES for m in METHODS)
  if done >= expected:
    return cell.name
  return f"{cell.name}\n({'not run yet' if not done else f'{done}/{expected} runs'})"


_MARKERS = {"cdr_ref": ("o", "tab:blue"), "cdr_paper": ("s", "tab:red")}


def plot_map(runs, path: str) -> bool:
  """CDR - CE per cell (rows) and noise (columns): accuracy, memorization."""
  fig, axes = plt.subplots(2, len(NOISES), figsize=(13, 7.5), sharey=True,
                           squeeze=False)
  drawn = False
  names = [_row_name(runs, c) for c in CELLS]
  for row, (metric, label) in enumerate((
      (_best, "CDR - CE, test acc at best noisy val (points)"),
      (_memorized, "CDR - CE, memorized at last epoch (points)"))):
    for col, t in enumerate(NOISES):
      ax = axes[row][col]
      ax.axvline(0.0, color="0.5", lw=0.8)
      for k, m in enumerate(METHODS[1:]):
        marker, color = _MARKERS[m]
        for y, cell in enumerate(CELLS):
          found = paired_difference(runs, (cell.config, t, RATE), m, metric)
          if found is None:
            continue
          mean, low, high = (100 * v for v in found)
          ax.errorbar(mean, y + 0.15 * (2 * k - 1),
                      xerr=[[mean - low], [high - mean]], fmt=marker,
                      color=color, capsize=3)
          drawn = True
      ax.set_yticks(range(len(CELLS)), names)
      ax.grid(axis="x", alpha=0.3)
      if row == 0:
        ax.set_title(plots.setting_name(None, t, RATE, False))
      ax.set_xlabel(label, fontsize=8)
  if not drawn:
    plt.close(fig)
    return False
  axes[0][0].invert_yaxis()  # The shared y axis: the first cell on top.
  handles = [plt.Line2D([], [], marker=_MARKERS[m][0], color=_MARKERS[m][1],
                        ls="") for m in METHODS[1:]]
  fig.legend(handles, METHODS[1:], loc="lower center", ncol=2)
  fig.suptitle(f"Fashion-MNIST, 40% noise: CDR - CE by regime (mean of seeds "
               f"{list(SEEDS)} paired by seed; bars = the seeds' range)",
               fontsize=10)
  fig.tight_layout(rect=(0, 0.05, 1, 0.95))
  _save(fig, path)
  return True


def plot_mlp_60k_curves(runs, path: str) -> bool:
  """Test-accuracy curves of the 60,000-image MLP cells."""
  cells = [c for c in CELLS if c.model == "MLP" and c.images == "60k"]
  fig, axes = plt.subplots(len(cells), len(NOISES), figsize=(13, 7),
                           sharey=True, squeeze=False)
  drawn = False
  for row, cell in enumerate(cells):
    for col, t in enumerate(NOISES):
      ax = axes[row][col]
      for m in METHODS:
        found = runs.get((cell.config, t, RATE, m), [])
        if not found:
          continue
        histories = [r["history"] for r in found]
        curve = plots.mean_curve(histories, "test_acc")
        ax.plot(range(1, len(curve) + 1), [100 * v for v in curve],
                color=plots.STRONG[m], lw=1.8)
        val = plots.mean_curve(histories, "val_acc")
        best = val.index(max(val))
        ax.plot(best + 1, 100 * curve[best], "o", color=plots.STRONG[m],
                markeredgecolor="white", markersize=7)
        drawn = True
      if cell.schedule == "paper":
        for e in (10, 20):  # 1-based: the drop comes before epoch e.
          ax.axvline(e - 0.5, color="0.4", ls="--", lw=0.8)
      ax.set_title(f"{cell.name}, {plots.setting_name(None, t, RATE, False)}",
                   fontsize=9)
      ax.set_xlim(0, NUM_EPOCHS + 1)  # Also for a cell not run yet.
      ax.set_xlabel("epoch")
      ax.set_ylabel("test accuracy (%)")
  if not drawn:
    plt.close(fig)
    return False
  handles = [plt.Line2D([], [], color=plots.STRONG[m], lw=1.8) for m in METHODS]
  handles += [plt.Line2D([], [], color="0.3", marker="o", ls=""),
              plt.Line2D([], [], color="0.4", ls="--", lw=0.8)]
  fig.legend(handles, [*METHODS, "best noisy-val epoch (reported)", "lr x0.1"],
             loc="lower center", ncol=5)
  fig.suptitle(f"Fashion-MNIST, MLP (hidden 1024-1024) on all 60,000 images, "
               f"40% noise: test accuracy per epoch, mean of seeds "
               f"{list(SEEDS)}", fontsize=10)
  fig.tight_layout(rect=(0, 0.05, 1, 0.95))
  _save(fig, path)
  return True


def _save(fig, path: str) -> None:
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=110)
  plt.close(fig)
  atomic.write_atomic(path, buffer.getvalue())


def report(results_dir: str, reuse_dir: str = MEMORIZE_TABLE) -> str:
  """Packs the map's own finished runs (runs.jsonl.gz), then writes
  results.md and the two figures; returns the Markdown."""
  own = [g for g, folder, _ in parts(results_dir, reuse_dir)
         if folder == results_dir]
  packs.write(results_dir,
              {"name": "the regime map", "regimes": {"reuse_dir": reuse_dir}},
              report_lib.finished_runs(own, results_dir))
  runs = load(results_dir, reuse_dir)
  text = markdown(runs)
  atomic.write_atomic(os.path.join(results_dir, "results.md"),
                      "# Results: the regime map\n\n" + text)
  for name, plot in (("regime_map.png", plot_map),
                     ("curves_mlp_60k.png", plot_mlp_60k_curves)):
    plot(runs, os.path.join(results_dir, name))
  return text


def count_runs(results_dir: str, reuse_dir: str = MEMORIZE_TABLE) -> dict[str, Any]:
  """How many of the map's runs are finished, per part."""
  runs = load(results_dir, reuse_dir)
  return {c.name: sum(len(runs.get((c.config, t, RATE, m), []))
                      for t in NOISES for m in METHODS) for c in CELLS}
