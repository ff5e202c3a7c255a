"""Per-epoch curves of a grid: one panel per noise setting, one line per method.

Each line is the mean over the method's seeds; a dot marks the epoch of its
best mean noisy-validation accuracy (the epoch the paper's protocol reports),
dashed lines the protocol's learning-rate drops, and the title names the
dataset, model and seeds, so that a plot read on its own says what it shows.
"""

import io
import math
import statistics
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from experiments import atomic

_SHORT = {"symmetric": "sym", "asymmetric": "asym", "pairflip": "pair",
          "instance": "inst", "none": "clean"}


def setting_name(config_name, noise_type, rate, multi_config) -> str:
  name = f"{_SHORT.get(noise_type, noise_type)} {round(100 * rate)}"
  return f"{config_name} {name}" if multi_config else name


def mean_curve(histories, metric) -> list[float] | None:
  """Per epoch, the mean of `metric` over the runs that log it (NaN, a gap in
  the plot, where none does: e.g. label precision of an empty selection);
  None if no epoch has it."""
  epochs = min(len(h) for h in histories)
  curve = []
  for e in range(epochs):
    values = [h[e][metric] for h in histories if h[e].get(metric) is not None]
    curve.append(statistics.fmean(values) if values else math.nan)
  return None if all(math.isnan(v) for v in curve) else curve


def _title(grid, runs) -> str:
  summaries = [run["summary"] for found in runs.values() for run in found]
  if not summaries:
    return ""
  datasets = sorted({s["dataset"] for s in summaries})
  models = sorted({s["model"] for s in summaries})
  seeds = sorted({s["seed"] for s in summaries})
  return (
      f"{', '.join(datasets)}, {', '.join(models)} ({', '.join(grid.configs)}); "
      f"mean over each method's seeds (of {seeds}); dot = best noisy-val epoch"
  )


def plot_curves(grid, runs, metric, ylabel, path, milestones=()) -> bool:
  """Writes the figure of `metric` to `path` (atomically).

  Args:
    grid: the grid (its settings and methods, in order).
    runs: `report.load_runs`'s finished runs by (config, type, rate, method).
    metric: a key of the per-epoch records, e.g. "test_acc".
    ylabel: the y axis' label; values are plotted in %.
    path: the PNG to write.
    milestones: 1-based epochs from which the learning rate drops.

  Returns:
    Whether any method logs `metric` (nothing is written otherwise).
  """
  settings = [
      (c, t, r) for c in grid.configs for t in grid.noise_types
      for r in grid.noise_rates
  ]
  cols = min(4, len(settings))
  rows = -(-len(settings) // cols)
  width = max(6, 4 * cols)  # inches; one panel still fits its title
  fig, axes = plt.subplots(
      rows, cols, figsize=(width, 3 * rows + 0.6), squeeze=False,
      sharex=True,
  )
  # One colour per method across panels; tab10 repeats beyond 10 methods,
  # so then tab20: its 10 dark hues first, then their light pairs.
  cmap = plt.get_cmap("tab10" if len(grid.methods) <= 10 else "tab20")
  many = len(grid.methods) > 10
  drawn = False
  for ax, setting in zip(axes.flat, settings):
    for i, m in enumerate(grid.methods):
      histories = [run["history"] for run in runs[(*setting, m)]]
      if not histories or (curve := mean_curve(histories, metric)) is None:
        continue
      drawn = True
      epochs = range(1, len(curve) + 1)
      (line,) = ax.plot(epochs, [100 * v for v in curve], label=m,
                        color=cmap(2 * i % 20 + (i >= 10) if many else i))
      val = mean_curve(histories, "val_acc")
      if val:
        best = val.index(max(val))
        ax.plot(best + 1, 100 * curve[best], "o", color=line.get_color())
    for k, epoch in enumerate(milestones):
      ax.axvline(epoch - 0.5, color="gray", linestyle="--", linewidth=0.8,
                 label="lr drop" if k == 0 else None)
    ax.set_title(setting_name(*setting, len(grid.configs) > 1))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  if not drawn:
    plt.close(fig)
    return False
  for ax in axes.flat[len(settings):]:
    ax.axis("off")
  legend = {}  # label -> handle, over every panel (a method may miss some).
  for ax in axes.flat:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      legend.setdefault(label, handle)
  labels = list(legend)
  fig.legend(legend.values(), labels, loc="lower center",
             ncol=max(1, min(7, len(labels))), fontsize="small")
  # About 11 characters of title per inch of figure.
  title = textwrap.wrap(_title(grid, runs), width=11 * width)
  fig.suptitle("\n".join(title), fontsize="medium")
  legend_rows = -(-len(labels) // 7)
  fig.tight_layout(rect=(0, 0.04 * legend_rows / rows, 1, 1))
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  plt.close(fig)
  atomic.write_atomic(path, buffer.getvalue())
  return True
