"""The report of a grid: tables in the paper's layout and per-epoch curves.

* results.md: rows = methods, columns = noise settings; mean +- sample std
  over seeds of the test accuracy at the epoch of best noisy-validation
  accuracy, the same for the last epoch and the memorization rate, and the
  wall time per epoch;
* test_accuracy.png, memorization.png (and label_precision.png,
  split_constant.png where a grid has them): experiments/plots.py;
* runs.jsonl.gz: every finished run's summary and per-epoch records
  (experiments/packs.py), from which all of the above is made.
"""

import functools
import os
import statistics
from typing import Any

from experiments import atomic
from experiments import divergence
from experiments import grid as grid_lib
from experiments import packs
from experiments import plots
from experiments import rate_report


def finished_runs(grids, results_dir) -> dict[packs.Run, dict]:
  """The folder's pack with the grids' finished workdirs read over it.

  A workdir is the run's own output, so it wins over a packed copy; runs
  packed but outside `grids` stay (a narrower --methods keeps the others).
  A diverged run is packed as its divergence record (`"diverged"`, no
  summary), so that the tables made from the pack alone still say so.
  """
  _, runs = packs.read(packs.path(results_dir))
  for grid in grids:
    for run in grid_lib.runs(grid):
      workdir = grid_lib.run_dir(results_dir, *run)
      record = packs.read_workdir(run, workdir)
      if record is None and (marker := divergence.marked(workdir)):
        record = {"run": list(run), "diverged": marker}
      if record is not None:
        runs[run] = record
  return runs


def _diverged(grid, runs) -> dict[tuple, int]:
  """Diverged runs of the grid by (config, noise type, rate, method)."""
  counts: dict[tuple, int] = {}
  for run in grid_lib.runs(grid):
    if "diverged" in runs.get(run, {}):
      counts[run[:-1]] = counts.get(run[:-1], 0) + 1
  return counts


def by_cell(grid, runs) -> dict[tuple, list[dict[str, Any]]]:
  """The grid's finished runs by (config, noise type, rate, method), in seed
  order (not the diverged ones: they have no summary)."""
  cells = {}
  for run in grid_lib.runs(grid):
    found = cells.setdefault(run[:-1], [])
    if "summary" in runs.get(run, {}):
      found.append(runs[run])
  return cells


def load_runs(grid, results_dir) -> dict[tuple, list[dict[str, Any]]]:
  """Finished runs (pack and workdirs) by (config, noise type, rate, method)."""
  return by_cell(grid, finished_runs([grid], results_dir))


def _mean_std(values: list[float]) -> str:
  if not values:
    return "-"
  mean = 100 * statistics.fmean(values)
  if len(values) == 1:
    return f"{mean:.2f} (n=1)"
  return f"{mean:.2f}+-{100 * statistics.stdev(values):.2f}"


# The paper's test accuracies (%, Xia et al. 2021, Tables 1 and 3), by
# dataset, method and (noise type, rate): shown beside ours. Its F-MNIST rows
# are ResNet-50 for 100 epochs; its MNIST rows LeNet-5 for 100 epochs. Only
# the cells readable in our copy of the paper (../shared/CDR.md).
_SETTINGS = [(t, r) for t in ("symmetric", "asymmetric", "pairflip", "instance")
             for r in (0.2, 0.4)]
PAPER = {
    ("fashion_mnist", "ce"): dict(zip(_SETTINGS, (
        90.36, 87.61, 91.31, 86.43, 91.65, 76.42, 88.81, 78.62))),
    ("fashion_mnist", "cdr"): {("asymmetric", 0.2): 93.01},
    ("mnist", "ce"): dict(zip(_SETTINGS, (
        98.60, 98.18, 99.00, 98.31, 98.74, 94.08, 98.14, 92.76))),
    ("mnist", "cdr"): dict(zip(_SETTINGS, (
        99.00, 98.80, 99.30, 98.80, 99.17, 98.12, 98.49, 94.45))),
}


def _paper_rows(dataset: str, settings) -> str:
  rows = []
  for method in ("ce", "cdr"):
    values = PAPER.get((dataset, method), {})
    cells = [
        f"*{values[(t, r)]:.2f}*" if (t, r) in values else "-"
        for _, t, r in settings
    ]
    if any(c != "-" for c in cells):
      rows.append(f"| *paper: {method}* | " + " | ".join(cells) + " |\n")
  return "".join(rows)


def _selected_by_validation(grid, settings, runs) -> str:
  """Per setting, the grid's method of best mean noisy-validation accuracy:
  the model selection a user without clean labels can make (for a sweep of
  CDR's tau, the paper's "located constant")."""
  lines = ["| setting | selected method | its val acc | its test acc |\n",
           "|---|---|---|---|\n"]
  for setting in settings:
    scores = {
        m: statistics.fmean(r["summary"]["best_val_acc"] for r in runs[(*setting, m)])
        for m in grid.methods if runs[(*setting, m)]
    }
    if not scores:
      continue
    best = max(scores, key=scores.get)
    test = statistics.fmean(
        r["summary"]["test_acc_at_best_val"] for r in runs[(*setting, best)]
    )
    lines.append(
        f"| {plots.setting_name(*setting, len(grid.configs) > 1)} | {best} | "
        f"{100 * scores[best]:.2f} | {100 * test:.2f} |\n"
    )
  return "".join(lines)


def markdown_report(grid, milestones_used, runs, diverged=None) -> str:
  """The tables, in the paper's layout, as Markdown."""
  settings = [
      (c, t, r) for c in grid.configs for t in grid.noise_types
      for r in grid.noise_rates
  ]
  names = [plots.setting_name(*s, len(grid.configs) > 1) for s in settings]
  header = "| method | " + " | ".join(names) + " |\n"
  header += "|---|" + "---|" * len(names) + "\n"

  def table(metric, only_logged=False) -> str:
    rows = []
    for m in grid.methods:
      # A diverged run has no summary: its cell says so (diverged: by cell).
      cells = [
          divergence.cell(_mean_std([
              v for run in runs[(*s, m)]
              if (v := metric(run)) is not None
          ]), (diverged or {}).get((*s, m), 0))
          for s in settings
      ]
      if not (only_logged and all(c == "-" for c in cells)):
        rows.append(f"| {m} | " + " | ".join(cells) + " |\n")
    return header + "".join(rows) if rows else ""

  precision = table(
      lambda run: run["history"][-1].get("label_precision"), only_logged=True
  )

  per_method_time = {
      m: [
          run["summary"]["seconds_per_epoch_median"]
          for s in settings for run in runs[(*s, m)]
      ]
      for m in grid.methods
  }
  others: dict[tuple, list[str]] = {}
  for m, s in grid.method_seeds:
    if m in grid.methods:
      others.setdefault(s, []).append(m)
  seeds = f"seeds {list(grid.seeds)}" + "".join(
      f" ({list(s)} for {', '.join(ms)})" for s, ms in others.items()
  )
  if grid.num_epochs is None:
    budget = grid_lib.OWN_SCHEDULE
  elif milestones_used:
    budget = (f"{grid.num_epochs} epochs, lr decayed at epochs "
              f"{list(milestones_used)}")
  else:
    budget = f"{grid.num_epochs} epochs, constant learning rate"
  lines = [
      f"Configs: {', '.join(grid.configs)}; {seeds}; {budget}.\n",
      "Cells: mean+-sample std over seeds, in %.\n",
      "\n## Test accuracy at the epoch of best (noisy) validation accuracy\n\n",
      table(lambda run: run["summary"]["test_acc_at_best_val"]),
      _paper_rows(_dataset_of(runs), settings),
      "\n## Test accuracy at the last epoch\n\n",
      table(lambda run: run["summary"]["last_test_acc"]),
      "\n## Memorization at the last epoch\n\n"
      "Fraction of the mislabeled training examples that the model predicts "
      "as their wrong label.\n\n",
      table(lambda run: run["summary"]["last_memorization"]),
      *(
          ["\n## Label precision of the selection at the last epoch\n\n"
           "Fraction of the examples a method trained on in its last epoch "
           "whose label is clean (the Co-teaching paper's figure; curves in "
           "label_precision.png).\n\n", precision]
          if precision else []
      ),
      "\n## Selected by noisy validation accuracy\n\n",
      _selected_by_validation(grid, settings, runs),
      rate_report.split_constant_section(grid, runs),
      rate_report.estimates_section(grid, runs),
      "\n## Cost\n\n| method | runs | median s/epoch (incl. evaluation) |\n"
      "|---|---|---|\n",
  ]
  for m, times in per_method_time.items():
    median = f"{statistics.median(times):.1f}" if times else "-"
    lines.append(f"| {m} | {len(times)} | {median} |\n")
  return "".join(lines)


def _dataset_of(runs) -> str | None:
  for found in runs.values():
    for run in found:
      return run["summary"]["dataset"]
  return None


def report(grid, milestones, results_dir, name=None) -> str:
  """Packs the finished runs, then writes results.md and the plots from the
  pack; returns the Markdown.

  Args:
    grid: the grid whose runs the tables and plots show.
    milestones: --lr_milestones (None: the config's, scaled).
    results_dir: the folder; its runs/ workdirs are read over its pack.
    name: the title's name; default the folder's name.
  """
  header = packs.grid_header(
      name or os.path.basename(os.path.normpath(results_dir)), grid, milestones
  )
  previous = packs.read_header(packs.path(results_dir)) or {}
  if "note" in previous:
    header["note"] = previous["note"]
  runs = finished_runs([grid], results_dir)
  packs.write(results_dir, header, runs)
  return write_report(header, runs, results_dir)


def write_report(header, runs, results_dir) -> str:
  """results.md and the plots of a grid pack's header and runs."""
  grid, milestones = packs.grid_of(header)
  cells = by_cell(grid, runs)
  first_config = grid_lib.load_config(grid.configs[0])
  # Configs with their own schedules share no milestones to draw.
  used = () if grid.num_epochs is None else grid_lib.lr_milestones(
      first_config, grid.num_epochs, milestones, grid.scale_milestones
  )
  text = markdown_report(grid, used, cells, _diverged(grid, runs))
  atomic.write_atomic(
      os.path.join(results_dir, "results.md"),
      f"# Results: {header['name']}"
      + (f" ({header['note']})" if "note" in header else "") + "\n\n" + text,
  )
  figures = {
      name: functools.partial(plots.plot_curves, grid, cells, metric, ylabel,
                              milestones=used)
      for metric, ylabel, name in (
          ("test_acc", "test accuracy (%)", "test_accuracy.png"),
          ("memorization", "mislabeled examples memorized (%)",
           "memorization.png"),
          ("label_precision", "label precision of the selection (%)",
           "label_precision.png"),
      )
  }
  figures["split_constant.png"] = functools.partial(
      rate_report.plot_split_constant, grid, cells
  )
  for name, plot in figures.items():
    path = os.path.join(results_dir, name)
    # A figure with nothing to show is not written; an older one would
    # describe other runs.
    if not plot(path=path) and os.path.exists(path):
      os.remove(path)
  return text
