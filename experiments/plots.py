"""Per-epoch curves of a grid: one panel per noise setting, one line per method.

A figure read on its own must say what it shows, so the title names the
dataset, the model and its training set, what is plotted and over which
seeds, and each panel its noise. CE and the two CDR flavours are drawn in
strong colours (CE black, `cdr_ref` blue, `cdr_paper` red, in every figure);
in a grid of more methods the others share one thin grey style (their
numbers are in results.md), and in a sweep of CDR's split constant the
colour runs with tau. A dot marks the epoch of best mean noisy-validation
accuracy (the epoch the paper's protocol reports), dashed lines the
learning-rate drops; the legend sits below the panels, on no curve.
"""

import io
import math
import statistics
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from experiments import atomic
from experiments import grid as grid_lib

_SHORT = {"symmetric": "sym", "asymmetric": "asym", "pairflip": "pair",
          "instance": "inst", "none": "clean"}
_DATASETS = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST",
             "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
_MODELS = {"mlp": "MLP", "lenet5": "LeNet-5", "resnet18": "ResNet-18",
           "resnet50": "ResNet-50"}
STRONG = {"ce": "black", "cdr_ref": "tab:blue", "cdr_paper": "tab:red"}
# Further methods' own colours, where a figure has few methods.
_PALETTE = ("tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink",
            "tab:olive", "tab:cyan", "tab:gray")
_MUTED = "0.72"
# A figure with more methods than this gives its own colour only to CE and
# CDR: more hues than that cannot be told apart in thin, crossing lines.
_MAX_COLOURED = 5


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


def styles(methods) -> dict[str, dict]:
  """Line style per method spec: see the module's docstring."""
  parsed = {m: grid_lib.parse_method(m) for m in methods}
  taus = {m: args["tau"] for m, (_, args) in parsed.items() if "tau" in args}
  if len(taus) == len(methods) > 1:  # A sweep of the split constant.
    low, high = min(taus.values()), max(taus.values())
    cmap = plt.get_cmap("viridis")
    return {m: {"color": cmap(0.9 * (t - low) / ((high - low) or 1)),
                "linewidth": 1.6, "zorder": 3} for m, t in taus.items()}
  focus = [m for m in methods if parsed[m][0] in STRONG]
  coloured = methods if len(methods) <= _MAX_COLOURED or not focus else focus
  spare = iter(_PALETTE * len(methods))
  out = {}
  for m in methods:
    if m in coloured:
      colour = STRONG[m] if m in STRONG else next(spare)
      out[m] = {"color": colour, "linewidth": 1.8, "zorder": 3}
    else:
      out[m] = {"color": _MUTED, "linewidth": 0.9, "zorder": 2}
  return out


def noise_name(noise_type: str, rate: float) -> str:
  return f"{noise_type} {round(100 * rate)}%"


def describe_runs(summaries) -> str:
  """'Fashion-MNIST, MLP 1024-1024, 3,600 training images' of the runs."""
  parts = []
  for key, names in (("dataset", _DATASETS), ("model", _MODELS)):
    values = sorted({s[key] for s in summaries})
    parts.append("/".join(names.get(v, v) for v in values))
  hidden = {tuple(s.get("config", {}).get("mlp_hidden") or ())
            for s in summaries if s["model"] == "mlp"}
  if len(hidden) == 1 and (widths := next(iter(hidden))):
    parts[1] += f" (hidden {'-'.join(map(str, widths))})"
  sizes = sorted({s["num_train"] for s in summaries if "num_train" in s})
  if sizes:
    parts.append("/".join(f"{n:,}" for n in sizes) + " training images")
  return ", ".join(parts)


def _seeds(grid, methods, style) -> str:
  """'seed 0', 'mean over seeds [0, 1]', or which methods ran which seeds."""
  groups: dict[tuple, list[str]] = {}
  for m in methods:
    groups.setdefault(grid.seeds_of(m), []).append(m)
  if len(groups) == 1:
    seeds = next(iter(groups))
    if len(seeds) == 1:
      return f"seed {seeds[0]}"
    return f"mean over seeds {list(seeds)}"
  return "mean over " + "; ".join(
      f"seeds {list(seeds)} for "
      + ("the other methods" if all(style[m]["color"] == _MUTED for m in ms)
         else ", ".join(ms))
      for seeds, ms in groups.items()
  )


def plot_curves(grid, runs, metric, ylabel, path, milestones=()) -> bool:
  """Writes the figure of `metric` to `path` (atomically).

  Args:
    grid: the grid (its settings and methods, in order).
    runs: `report.by_cell`'s finished runs by (config, type, rate, method).
    metric: a key of the per-epoch records, e.g. "test_acc".
    ylabel: the y axis' label, also what the title says is plotted; values
      are plotted in %.
    path: the PNG to write.
    milestones: 1-based epochs from which the learning rate drops.

  Returns:
    Whether any method logs `metric` (nothing is written otherwise).
  """
  settings = [
      (c, t, r) for c in grid.configs for t in grid.noise_types
      for r in grid.noise_rates
  ]
  curves = {}  # (setting, method) -> (curve, best-validation epoch index)
  for setting in settings:
    for m in grid.methods:
      histories = [run["history"] for run in runs[(*setting, m)]]
      if histories and (curve := mean_curve(histories, metric)) is not None:
        val = mean_curve(histories, "val_acc")
        curves[(setting, m)] = (curve, val.index(max(val)) if val else None)
  if not curves:
    return False
  drawn = [m for m in grid.methods if any((s, m) in curves for s in settings)]
  style = styles(drawn)
  cols = min(4, len(settings))
  rows = -(-len(settings) // cols)
  width = max(7, 4 * cols)  # inches
  fig, axes = plt.subplots(
      rows, cols, figsize=(width, 3 * rows + 1.6), squeeze=False,
      sharex=True, layout="constrained",
  )
  legend = {}  # label -> handle, in the order of the grid's methods
  for ax, setting in zip(axes.flat, settings):
    for m in drawn:
      if (setting, m) not in curves:
        continue
      curve, best = curves[(setting, m)]
      (line,) = ax.plot(range(1, len(curve) + 1), [100 * v for v in curve],
                        **style[m])
      muted = style[m]["color"] == _MUTED
      legend.setdefault(
          f"other methods ({sum(style[o]['color'] == _MUTED for o in drawn)}; "
          "see results.md)" if muted else m, line)
      if best is not None:
        ax.plot(best + 1, 100 * curve[best], "o", color=style[m]["color"],
                markersize=4 if muted else 7, markeredgecolor="white",
                zorder=style[m]["zorder"] + 1)
    for k, epoch in enumerate(milestones):
      line = ax.axvline(epoch - 0.5, color="0.4", linestyle="--",
                        linewidth=0.8)
      if k == 0:
        legend.setdefault("lr x0.1", line)
    ax.set_title(noise_name(setting[1], setting[2])
                 + (f", {setting[0]}" if len(grid.configs) > 1 else ""))
    ax.grid(alpha=0.3)
  for k, ax in enumerate(axes.flat):
    if k >= len(settings):
      ax.axis("off")
      continue
    if k % cols == 0:
      ax.set_ylabel(ylabel)
    if k + cols >= len(settings):  # No panel below it.
      ax.set_xlabel("epoch")
      ax.xaxis.set_tick_params(labelbottom=True)
  legend["best noisy-val epoch (reported)"] = plt.Line2D(
      [], [], marker="o", color="0.3", linestyle="", markersize=6)
  fig.legend(legend.values(), legend.keys(), loc="outside lower center",
             ncol=min(len(legend), 5 if cols > 2 else 2), fontsize="small")
  summaries = [run["summary"] for found in runs.values() for run in found]
  schedule = (f"lr x0.1 from epochs {list(milestones)}" if milestones
              else "constant lr")
  budget = (grid_lib.OWN_SCHEDULE if grid.num_epochs is None
            else f"{grid.num_epochs} epochs, {schedule}")
  title = (
      f"{describe_runs(summaries)}: {ylabel.replace(' (%)', '')} per epoch\n"
      f"{budget}; {_seeds(grid, drawn, style)}"
  )
  # About 11 characters of a medium title per inch of figure.
  fig.suptitle("\n".join(textwrap.fill(line, 11 * width)
                         for line in title.splitlines()), fontsize="medium")
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  plt.close(fig)
  atomic.write_atomic(path, buffer.getvalue())
  return True
