"""Runs a grid of noisy-label experiments and reports them as in the paper.

One command trains every (config, noise type, noise rate, method, seed)
combination of a grid, one after the other in this process (the clean
dataset is loaded once per dataset), skips runs that already finished (a
finished run of another configuration in the same place is an error, not a
result), and writes to --results_dir:

* results.md: tables in the paper's layout (rows = methods, columns = noise
  settings; mean +- sample std over seeds of the test accuracy at the epoch
  of best noisy-validation accuracy), the same for the last epoch and the
  memorization rate, and the epoch budget and wall time per epoch;
* test_accuracy.png, memorization.png: per-epoch curves, one panel per
  setting, one line per method (mean over seeds) - the early-learning
  picture;
* runs/<config>/<noise>_<rate>/<method>/seed<k>/: each run's workdir.

Presets (--grid), each overridable flag by flag:

* main: Fashion-MNIST, LeNet-5, 40% instance noise, ce vs cdr_ref, 1 seed,
  24 epochs (lr x0.1 at 8 and 16): about 8 minutes on 2 CPU cores;
* fmnist_table: Fashion-MNIST, LeNet-5, {symmetric, asymmetric, pairflip,
  instance} x {20%, 40%}, ce vs cdr_ref, 2 seeds, 8 epochs: about an hour;
* fmnist_mlp: Fashion-MNIST, MLP 784-1024-1024-10 (a model that can
  memorize), symmetric and instance 40%, ce vs cdr_ref, 1 seed, 15 epochs.

  python -m experiments.reproduce --grid=main
  python -m experiments.reproduce --grid=fmnist_table --methods=ce,cdr_ref,cdr_paper
  python -m experiments.reproduce --grid=fmnist_table --report_only
"""

import dataclasses
import importlib
import json
import os
import statistics
import sys
import time
from typing import Any

from absl import app
from absl import flags
from absl import logging
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from experiments import input_pipeline
from experiments import train


@dataclasses.dataclass(frozen=True)
class Grid:
  """A set of runs: the product of its fields."""

  configs: tuple[str, ...]
  noise_types: tuple[str, ...]
  noise_rates: tuple[float, ...]
  methods: tuple[str, ...]
  seeds: tuple[int, ...]
  num_epochs: int


_ALL_NOISE = ("symmetric", "asymmetric", "pairflip", "instance")
PRESETS = {
    # 2 runs x 24 epochs x ~11 s (with evaluation) ~ 9-10 min on 2 idle
    # cores, leaving room for a busy machine within 15 minutes.
    "main": Grid(
        ("fashion_mnist_lenet",), ("instance",), (0.4,), ("ce", "cdr_ref"),
        (0,), 24,
    ),
    # 32 runs x 8 epochs ~ 1 hour on 2 cores.
    "fmnist_table": Grid(
        ("fashion_mnist_lenet",), _ALL_NOISE, (0.2, 0.4), ("ce", "cdr_ref"),
        (0, 1), 8,
    ),
    "fmnist_mlp": Grid(
        ("fashion_mnist_mlp",), ("symmetric", "instance"), (0.4,),
        ("ce", "cdr_ref"), (0,), 15,
    ),
}

_GRID = flags.DEFINE_enum("grid", "main", list(PRESETS), "Preset grid.")
_CONFIGS = flags.DEFINE_list(
    "configs", None, "Config modules in experiments/configs (dataset + model)."
)
_NOISE_TYPES = flags.DEFINE_list("noise_types", None, "Noise types.")
_NOISE_RATES = flags.DEFINE_list("noise_rates", None, "Noise rates in [0, 1).")
_METHODS = flags.DEFINE_list("methods", None, "Methods (experiments/methods.py).")
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds.")
_NUM_EPOCHS = flags.DEFINE_integer("num_epochs", None, "Epochs per run.")
_LR_MILESTONES = flags.DEFINE_list(
    "lr_milestones",
    None,
    "Epochs at which the learning rate decays; empty (--lr_milestones=) for "
    "a constant rate. Default: the config's milestones scaled so that the "
    "last falls at 2/3 of num_epochs (the reference schedule 10, 20 of 30 "
    "epochs).",
)
_RESULTS_DIR = flags.DEFINE_string(
    "results_dir", None, "Output directory; default experiments/results/<grid>."
)
_DATA_SOURCE = flags.DEFINE_string("data_source", None, "Overrides data_source.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Overrides data_dir.")
_LOG_PROGRESS = flags.DEFINE_bool("log_progress", True, "tqdm progress bars.")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Only aggregate the finished runs; train nothing."
)


def scaled_milestones(milestones, num_epochs: int) -> tuple[int, ...]:
  """Scales milestones so the last one falls at 2/3 of the epoch budget."""
  if not milestones:
    return ()
  scale = 2 * num_epochs / (3 * max(milestones))
  scaled = sorted({max(1, round(m * scale)) for m in milestones})
  return tuple(m for m in scaled if m < num_epochs)


def lr_milestones(config, num_epochs: int, override) -> tuple[int, ...]:
  """The --lr_milestones override, or the config's scaled to num_epochs."""
  if override is not None:
    return tuple(override)
  return scaled_milestones(config.lr_milestones, num_epochs)


def resolve_grid() -> tuple[Grid, tuple[int, ...] | None]:
  """The preset with the command-line overrides applied, and milestones."""
  grid = PRESETS[_GRID.value]
  overrides = {
      "configs": _CONFIGS.value and tuple(_CONFIGS.value),
      "noise_types": _NOISE_TYPES.value and tuple(_NOISE_TYPES.value),
      "noise_rates": _NOISE_RATES.value
      and tuple(float(r) for r in _NOISE_RATES.value),
      "methods": _METHODS.value and tuple(_METHODS.value),
      "seeds": _SEEDS.value and tuple(int(s) for s in _SEEDS.value),
      "num_epochs": _NUM_EPOCHS.value,
  }
  grid = dataclasses.replace(
      grid, **{k: v for k, v in overrides.items() if v is not None}
  )
  # An empty --lr_milestones= means a constant learning rate.
  milestones = None
  if _LR_MILESTONES.value is not None:
    milestones = tuple(int(m) for m in _LR_MILESTONES.value)
  return grid, milestones


def make_config(grid, config_name, noise_type, rate, method, seed, milestones):
  """The configuration of one run."""
  config = importlib.import_module(f"experiments.configs.{config_name}").get_config()
  config.noise_type = noise_type
  config.noise_rate = rate
  config.method = method
  config.seed = seed
  config.num_epochs = grid.num_epochs
  config.lr_milestones = lr_milestones(config, grid.num_epochs, milestones)
  config.log_progress = _LOG_PROGRESS.value
  if _DATA_SOURCE.value is not None:
    config.data_source = _DATA_SOURCE.value
  if _DATA_DIR.value is not None:
    config.data_dir = _DATA_DIR.value
  return config


def run_dir(results_dir, config_name, noise_type, rate, method, seed) -> str:
  return os.path.join(
      results_dir,
      "runs",
      config_name,
      f"{noise_type}_{round(100 * rate)}",
      method,
      f"seed{seed}",
  )


def is_finished(workdir: str, config) -> bool:
  """Whether workdir holds the finished run of `config`.

  Raises:
    ValueError: if it holds a finished run of another configuration (e.g.
      another epoch budget): its results must not be mixed into this grid.
  """
  path = os.path.join(workdir, "summary.json")
  if not os.path.exists(path):
    return False
  with open(path) as f:
    summary = json.load(f)
  differences = train.config_differences(summary["config"], config)
  if summary["epochs"] != config.num_epochs:
    differences.append(f"num_epochs: {summary['epochs']} -> {config.num_epochs}")
  if differences:
    raise ValueError(
        f"{workdir} holds a finished run with another configuration "
        f"({'; '.join(differences)}); use another --results_dir."
    )
  return True


def run_grid(grid, milestones, results_dir) -> None:
  """Trains every run of the grid that has no summary.json yet."""
  datasets: dict[tuple, input_pipeline.Dataset] = {}
  runs = [
      (c, t, r, m, s)
      for c in grid.configs
      for t in grid.noise_types
      for r in grid.noise_rates
      for m in grid.methods
      for s in grid.seeds
  ]
  for i, run in enumerate(runs, 1):
    workdir = run_dir(results_dir, *run)
    config = make_config(grid, *run, milestones)
    if is_finished(workdir, config):
      continue
    key = (config.dataset, config.data_source, config.data_dir)
    if key not in datasets:
      datasets[key] = input_pipeline.load_dataset(
          config.dataset, source=config.data_source, data_dir=config.data_dir
      )
    print(
        f"[{i}/{len(runs)}] {' '.join(map(str, run))}: "
        f"{config.num_epochs} epochs, lr x{config.lr_decay} at epochs "
        f"{list(config.lr_milestones)}",
        flush=True,
    )
    start = time.perf_counter()
    summary = train.train_and_evaluate(config, workdir, dataset=datasets[key])
    print(
        f"    test acc at best val {summary['test_acc_at_best_val']:.4f} "
        f"(epoch {summary['best_epoch']}), last {summary['last_test_acc']:.4f}, "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )


def load_runs(grid, results_dir) -> dict[tuple, list[dict[str, Any]]]:
  """Finished runs by (config, noise type, rate, method): (summary, history)."""
  runs = {}
  for c in grid.configs:
    for t in grid.noise_types:
      for r in grid.noise_rates:
        for m in grid.methods:
          found = []
          for s in grid.seeds:
            workdir = run_dir(results_dir, c, t, r, m, s)
            if not os.path.exists(os.path.join(workdir, "summary.json")):
              continue
            with open(os.path.join(workdir, "summary.json")) as f:
              summary = json.load(f)
            with open(os.path.join(workdir, "metrics.jsonl")) as f:
              history = [json.loads(line) for line in f]
            found.append({"summary": summary, "history": history})
          runs[(c, t, r, m)] = found
  return runs


_SHORT = {"symmetric": "sym", "asymmetric": "asym", "pairflip": "pair",
          "instance": "inst", "none": "clean"}


def _setting_name(config_name, noise_type, rate, multi_config):
  name = f"{_SHORT.get(noise_type, noise_type)} {round(100 * rate)}"
  return f"{config_name} {name}" if multi_config else name


def _mean_std(values: list[float]) -> str:
  if not values:
    return "-"
  mean = 100 * statistics.fmean(values)
  if len(values) == 1:
    return f"{mean:.2f} (n=1)"
  return f"{mean:.2f}+-{100 * statistics.stdev(values):.2f}"


def markdown_report(grid, milestones_used, runs) -> str:
  """The tables, in the paper's layout, as Markdown."""
  settings = [
      (c, t, r) for c in grid.configs for t in grid.noise_types
      for r in grid.noise_rates
  ]
  names = [_setting_name(*s, len(grid.configs) > 1) for s in settings]
  header = "| method | " + " | ".join(names) + " |\n"
  header += "|---|" + "---|" * len(names) + "\n"

  def table(metric) -> str:
    rows = []
    for m in grid.methods:
      cells = [
          _mean_std([
              v for run in runs[(*s, m)]
              if (v := metric(run)) is not None
          ])
          for s in settings
      ]
      rows.append(f"| {m} | " + " | ".join(cells) + " |\n")
    return header + "".join(rows)

  per_method_time = {
      m: [
          run["summary"]["seconds_per_epoch_median"]
          for s in settings for run in runs[(*s, m)]
      ]
      for m in grid.methods
  }
  seeds = sorted({
      run["summary"]["seed"] for v in runs.values() for run in v
  })
  lines = [
      f"Configs: {', '.join(grid.configs)}; seeds {seeds}; "
      f"{grid.num_epochs} epochs, "
      + (
          f"lr decayed at epochs {list(milestones_used)}.\n"
          if milestones_used
          else "constant learning rate.\n"
      ),
      "Cells: mean+-sample std over seeds, in %.\n",
      "\n## Test accuracy at the epoch of best (noisy) validation accuracy\n\n",
      table(lambda run: run["summary"]["test_acc_at_best_val"]),
      "\n## Test accuracy at the last epoch\n\n",
      table(lambda run: run["summary"]["last_test_acc"]),
      "\n## Memorization at the last epoch\n\n"
      "Fraction of the mislabeled training examples that the model predicts "
      "as their wrong label.\n\n",
      table(lambda run: run["summary"]["last_memorization"]),
      "\n## Cost\n\n| method | runs | median s/epoch (incl. evaluation) |\n"
      "|---|---|---|\n",
  ]
  for m, times in per_method_time.items():
    median = f"{statistics.median(times):.1f}" if times else "-"
    lines.append(f"| {m} | {len(times)} | {median} |\n")
  return "".join(lines)


def plot_curves(grid, runs, metric, ylabel, path) -> None:
  """One panel per setting, one line per method: mean over seeds per epoch."""
  settings = [
      (c, t, r) for c in grid.configs for t in grid.noise_types
      for r in grid.noise_rates
  ]
  cols = min(4, len(settings))
  rows = -(-len(settings) // cols)
  fig, axes = plt.subplots(
      rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False, sharex=True
  )
  for ax, setting in zip(axes.flat, settings):
    for m in grid.methods:
      histories = [run["history"] for run in runs[(*setting, m)]]
      if not histories:
        continue
      epochs = min(len(h) for h in histories)
      values = [
          statistics.fmean(
              100 * h[e][metric] for h in histories if h[e][metric] is not None
          )
          for e in range(epochs)
      ]
      ax.plot(range(1, epochs + 1), values, label=m)
    ax.set_title(_setting_name(*setting, len(grid.configs) > 1))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  for ax in axes.flat[len(settings):]:
    ax.axis("off")
  axes.flat[0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def report(grid, milestones, results_dir) -> str:
  """Writes results.md, summaries.json and the plots; returns the Markdown."""
  runs = load_runs(grid, results_dir)
  first_config = importlib.import_module(
      f"experiments.configs.{grid.configs[0]}"
  ).get_config()
  used = lr_milestones(first_config, grid.num_epochs, milestones)
  text = markdown_report(grid, used, runs)
  train.write_atomic(
      os.path.join(results_dir, "results.md"),
      f"# Results: {os.path.basename(os.path.normpath(results_dir))}\n\n"
      + text,
  )
  train.write_atomic(
      os.path.join(results_dir, "summaries.json"),
      json.dumps(
          [
              {k: v for k, v in run["summary"].items() if k != "config"}
              for found in runs.values() for run in found
          ],
          indent=1,
      )
      + "\n",
  )
  plot_curves(
      grid, runs, "test_acc", "test accuracy (%)",
      os.path.join(results_dir, "test_accuracy.png"),
  )
  plot_curves(
      grid, runs, "memorization", "memorized mislabeled (%)",
      os.path.join(results_dir, "memorization.png"),
  )
  return text


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  grid, milestones = resolve_grid()
  results_dir = _RESULTS_DIR.value or os.path.join(
      "experiments", "results", _GRID.value
  )
  os.makedirs(results_dir, exist_ok=True)
  if not _REPORT_ONLY.value:
    try:
      run_grid(grid, milestones, results_dir)
    except (ValueError, FileNotFoundError) as e:
      # Configuration and data problems: the message is the useful part.
      sys.exit(f"error: {e}")
  print(report(grid, milestones, results_dir))
  print(
      f"Wrote {results_dir}/results.md, test_accuracy.png, memorization.png "
      f"and summaries.json"
  )


if __name__ == "__main__":
  app.run(main)
