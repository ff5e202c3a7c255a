"""Runs a grid of noisy-label experiments and reports them as in the paper.

One command trains every (config, noise type, noise rate, method, seed)
combination of a grid, one after the other in this process (the clean
dataset is loaded once per dataset), skips runs that already finished (a
finished run of another configuration in the same place is an error, not a
result), checks every run's configuration before training the first, and writes to
--results_dir the report (experiments/report.py: results.md, curves) and
runs.jsonl.gz, every finished run's summary and per-epoch records in one
file (experiments/packs.py). Each run trains in its workdir,
runs/<config>/<noise>_<rate>/<method>/seed<k>/ (checkpoints: working files,
not results); a run in the pack or with a summary there counts as done.
--from=<folder>/runs.jsonl.gz makes a folder's report again from its pack
alone.

Presets (--grid, experiments/grid.py), each overridable flag by flag:

* main: the memorization regime (configs/fashion_mnist_mlp_memorize.py: MLP,
  4,000 Fashion-MNIST images, constant rate, 50 epochs) at 40% symmetric
  noise, ce vs cdr_ref vs cdr_paper, 1 seed: a few minutes on 2 CPU cores;
* memorize_table: the same regime, 8 noise settings, every method, 3 seeds
  for ce / cdr_ref / cdr_paper and 2 for each baseline (--runs_per_program=2
  trains a cell's seeds together);
* tau_sweep: cdr_ref with the split constant 0.1..0.7, 8 settings, 2 seeds:
  the paper's Table 2 (located constant vs noise rate);
* unknown_tau: cdr_ref with tau from the oracle, anchor points or confident
  learning after a warm-up, and Co-teaching with the true or the
  anchor-point forget rate, 8 settings, 1 seed;
* fmnist_table: Fashion-MNIST, LeNet-5, {symmetric, asymmetric, pairflip,
  instance} x {20%, 40%}, ce vs cdr_ref, 2 seeds, 8 epochs: about an hour;
* fmnist_mlp: Fashion-MNIST, MLP 784-1024-1024-10 on all images, symmetric
  and instance 40%, ce vs cdr_ref, 1 seed, 15 epochs;
* real_noise: Food-101, WebVision-mini, Clothing1M, CIFAR-10N, CIFAR-100N
  (grid.REAL_NOISE_CONFIGS), each config with its source's model, epochs
  and schedule on the labels its release ships (noise type "real"), ce vs
  cdr_ref vs cdr_paper, 1 seed. The folder datasets each read their own
  --data_dir: run one config at a time into one --results_dir
  (--configs=clothing1m_resnet50 --data_dir=/data/clothing1m), then
  --report_only for the table of all five.

  python -m experiments.reproduce --grid=main
  python -m experiments.reproduce --grid=fmnist_table --methods=ce,cdr_ref,cdr_paper
  python -m experiments.reproduce --grid=fmnist_table --report_only
  python -m experiments.reproduce --from=experiments/results/memorize_table/runs.jsonl.gz
"""

import dataclasses
import json
import os
import time

from absl import app
from absl import flags
from absl import logging

from experiments import cli
from experiments import data
from experiments import distributed
from experiments import divergence
from experiments import errors
from experiments import grid as grid_lib
from experiments import many_runs
from experiments import packs
from experiments import regimes
from experiments import report
from experiments import run_config
from experiments import train
from experiments import workdir_lock

_GRID = flags.DEFINE_enum(
    "grid", "main", [*grid_lib.PRESETS, "regimes"],
    "Preset grid; 'regimes' is the regime map of experiments/regimes.py.",
)
_CONFIGS = flags.DEFINE_list(
    "configs", None, "Config modules in experiments/configs (dataset + model)."
)
_NOISE_TYPES = flags.DEFINE_list("noise_types", None, "Noise types.")
_NOISE_RATES = flags.DEFINE_list("noise_rates", None, "Noise rates in [0, 1).")
_METHODS = flags.DEFINE_list(
    "methods", None, "Methods (names in experiments/methods REGISTRY)."
)
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds.")
_NUM_EPOCHS = flags.DEFINE_integer("num_epochs", None, "Epochs per run.")
_LR_MILESTONES = flags.DEFINE_list(
    "lr_milestones",
    None,
    "1-based epochs from which the learning rate is decayed; empty "
    "(--lr_milestones=) for a constant rate. Default: the config's "
    "milestones scaled so that the last falls at 2/3 of num_epochs (the "
    "reference schedule: from epochs 10 and 20 of 30).",
)
_RESULTS_DIR = flags.DEFINE_string(
    "results_dir", None, "Output directory; default runs/<grid>."
)
_DATA_SOURCE = flags.DEFINE_string("data_source", None, "Overrides data_source.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Overrides data_dir.")
_LOG_PROGRESS = flags.DEFINE_bool("log_progress", True, "tqdm progress bars.")
_RUNS_PER_PROGRAM = flags.DEFINE_integer(
    "runs_per_program", 1,
    "Train up to this many seeds of a cell in one compiled program (jax.vmap; "
    "experiments/many_runs.py), same results up to float reassociation: for "
    "accelerators that one small run leaves idle; on the 2-core CPU it was "
    "0.7-0.87x as fast as separate runs (README).",
    lower_bound=1,
)
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Only aggregate the finished runs; train nothing."
)
_FROM = flags.DEFINE_string(
    "from", None,
    "A runs.jsonl.gz: write it, results.md and the plots to --results_dir "
    "(default: the pack's folder) from the pack alone, as --report_only "
    "with the grid the pack records; trains nothing.",
)


def _parse(values, kind, flag: str):
  try:
    return tuple(kind(v) for v in values)
  except ValueError:
    raise errors.UserError(
        f"--{flag} must be a comma-separated list of {kind.__name__}s, got "
        f"{','.join(values)!r}."
    ) from None


def resolve_grid() -> tuple[grid_lib.Grid, tuple[int, ...] | None]:
  """The preset with the command-line overrides applied, and milestones."""
  overrides = {
      "configs": _CONFIGS.value and tuple(_CONFIGS.value),
      "noise_types": _NOISE_TYPES.value and tuple(_NOISE_TYPES.value),
      "noise_rates": _NOISE_RATES.value
      and _parse(_NOISE_RATES.value, float, "noise_rates"),
      "methods": _METHODS.value and tuple(_METHODS.value),
      "seeds": _SEEDS.value and _parse(_SEEDS.value, int, "seeds"),
      "num_epochs": _NUM_EPOCHS.value,
  }
  if overrides["seeds"]:  # --seeds applies to every method.
    overrides["method_seeds"] = ()
  grid = dataclasses.replace(
      grid_lib.PRESETS[_GRID.value],
      **{k: v for k, v in overrides.items() if v is not None},
  )
  # An empty --lr_milestones= means a constant learning rate.
  milestones = None
  if _LR_MILESTONES.value is not None:
    milestones = _parse(_LR_MILESTONES.value, int, "lr_milestones")
  return grid, milestones


def _config_overrides() -> dict:
  overrides = {"log_progress": _LOG_PROGRESS.value}
  if _DATA_SOURCE.value is not None:
    overrides["data_source"] = _DATA_SOURCE.value
  if _DATA_DIR.value is not None:
    overrides["data_dir"] = _DATA_DIR.value
  return overrides


def is_finished(workdir: str, config, packed=None) -> bool:
  """Whether workdir, or the folder's pack (`packed`: (its path, the run's
  record) if the pack holds the run), holds the finished run of `config`.

  Raises:
    ValueError: if it holds a finished run of another configuration (e.g.
      another epoch budget): its results must not be mixed into this grid.
  """
  path = os.path.join(workdir, "summary.json")
  if os.path.exists(path):
    with open(path) as f:
      summary = json.load(f)
  elif (marker := divergence.marked(workdir)) is not None:
    summary = marker  # Diverged: training it again would diverge again.
  elif packed is not None:
    pack_path, record = packed
    summary = record.get("summary") or record["diverged"]
    workdir = f"{pack_path} (run {' '.join(map(str, record['run']))})"
  else:
    return False
  if differences := run_config.differences(summary["config"], config):
    raise errors.UserError(
        f"{workdir} holds a finished run with another configuration "
        f"({'; '.join(differences)}); use another --results_dir."
    )
  return True


def plan(grid, milestones, results_dir) -> list[tuple[tuple, object, str]]:
  """(run, config, workdir) of every run, each config checked before any runs.

  Raises:
    ValueError: naming the first run whose configuration cannot run.
  """
  planned = []
  for run in grid_lib.runs(grid):
    config = grid_lib.make_config(grid, run, milestones, _config_overrides())
    try:
      run_config.validate(config, num_devices=1)
    except errors.UserError as e:
      raise errors.UserError(f"run {' '.join(map(str, run))}: {e}") from None
    planned.append((run, config, grid_lib.run_dir(results_dir, *run)))
  return planned


def run_grid(grid, milestones, results_dir) -> None:
  """Trains every run of the grid that has no summary.json yet."""
  planned = plan(grid, milestones, results_dir)
  pack_path = packs.path(results_dir)
  _, packed = packs.read(pack_path)
  todo = [
      (run, config, workdir) for run, config, workdir in planned
      if not is_finished(workdir, config,
                         (pack_path, packed[run]) if run in packed else None)
  ]
  if len(todo) < len(planned):
    print(
        f"{len(planned) - len(todo)} of {len(planned)} runs already finished in "
        f"{results_dir}: reusing their results.",
        flush=True,
    )
  datasets: dict[tuple, data.Dataset | None] = {}
  groups = program_groups(todo, _RUNS_PER_PROGRAM.value)
  for i, group in enumerate(groups, 1):
    config = group[0][1]
    key = data.config_key(config)
    if key not in datasets:  # None for a folder dataset (read at setup).
      datasets[key] = data.load_configured(config)
    schedule = (
        f"lr x{config.lr_decay} from epochs {list(config.lr_milestones)}"
        if config.lr_milestones else "constant lr"
    )
    seeds = ",".join(str(run[-1]) for run, _, _ in group)
    print(
        f"[{i}/{len(groups)}] {' '.join(map(str, group[0][0][:-1]))} "
        f"seed{'s' * (len(group) > 1)} {seeds}: {config.num_epochs} "
        f"epoch{'s' * (config.num_epochs != 1)}, {schedule}",
        flush=True,
    )
    start = time.perf_counter()
    if len(group) == 1:
      try:
        summaries = [train.train_and_evaluate(config, group[0][2], datasets[key])]
      except divergence.Diverged as e:  # The other runs go on.
        divergence.mark(group[0][2], config, e)
        print(f"    diverged: {e}", flush=True)
        summaries = []
    else:
      summaries = many_runs.train_and_evaluate_many(
          [c for _, c, _ in group], [w for _, _, w in group],
          os.path.join(os.path.dirname(group[0][2]), f"group_seeds{seeds.replace(',', '_')}"),
          datasets[key],
      )
    for summary in summaries:
      print(
          f"    seed {summary['seed']}: test acc at best val "
          f"{summary['test_acc_at_best_val']:.4f} (epoch {summary['best_epoch']}), "
          f"last {summary['last_test_acc']:.4f}",
          flush=True,
      )
    print(f"    {time.perf_counter() - start:.0f} s", flush=True)


def program_groups(todo, runs_per_program: int) -> list[list]:
  """The runs to train together: same cell (all but the seed), up to
  `runs_per_program` seeds each, in grid order."""
  cells: dict[tuple, list] = {}
  for item in todo:
    cells.setdefault(item[0][:-1], []).append(item)
  return [
      runs[k:k + runs_per_program]
      for runs in cells.values()
      for k in range(0, len(runs), runs_per_program)
  ]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  results_dir = _RESULTS_DIR.value or (
      os.path.dirname(_FROM.value) if _FROM.value
      else os.path.join("runs", _GRID.value)
  )
  cli.check_output_dir(results_dir, "--results_dir")
  distributed.initialize_from_flags()
  distributed.quiet_unless_writer()
  # One grid per results folder: a second one fails here, at once.
  with workdir_lock.hold(results_dir, "--results_dir",
                         primary=distributed.is_writer()):
    if _FROM.value:
      print(report_from(_FROM.value, results_dir))
      print(f"Wrote {results_dir}/results.md, its plots and {packs.FILENAME}")
      return
    if _GRID.value == "regimes":
      run_regimes(results_dir)
      return
    grid, milestones = resolve_grid()
    if not _REPORT_ONLY.value:
      run_grid(grid, milestones, results_dir)
    text = report.report(grid, milestones, results_dir)
  print(text)
  print(
      f"Wrote {results_dir}/results.md, test_accuracy.png, memorization.png "
      f"and {packs.FILENAME}"
  )


def report_from(pack_path: str, results_dir: str) -> str:
  """The pack copied to results_dir, and the report of the grid it records."""
  given = [f"--{f.name}" for f in (_GRID, _CONFIGS, _NOISE_TYPES, _NOISE_RATES,
                                   _METHODS, _SEEDS, _NUM_EPOCHS,
                                   _LR_MILESTONES, _REPORT_ONLY)
           if f.present]
  if given:
    raise errors.UserError(
        f"--from takes the grid from the pack; {', '.join(given)} cannot "
        "change it."
    )
  header, runs = packs.read(pack_path)
  if header is None:
    raise errors.UserError(f"--from: no such file: {pack_path}.")
  os.makedirs(results_dir, exist_ok=True)
  if not os.path.exists(packs.path(results_dir)) or not os.path.samefile(
      pack_path, packs.path(results_dir)):
    packs.write(results_dir, header, runs)
  if "regimes" in header:
    return regimes.report(results_dir, header["regimes"]["reuse_dir"])
  grid, milestones = packs.grid_of(header)
  return report.report(grid, milestones, results_dir, name=header["name"])


def run_regimes(results_dir: str) -> None:
  """The regime map: its parts in order, each checked before any trains."""
  fixed = [f"--{f.name}" for f in (_CONFIGS, _NOISE_TYPES, _NOISE_RATES,
                                   _METHODS, _SEEDS, _NUM_EPOCHS,
                                   _LR_MILESTONES)
           if f.present]
  if fixed:
    raise errors.UserError(
        f"--grid=regimes fixes its cells; {', '.join(fixed)} cannot change them."
    )
  os.makedirs(results_dir, exist_ok=True)
  parts = [(g, d) for g, d, trains in regimes.parts(results_dir) if trains]
  for grid, folder in parts:
    plan(grid, None, folder)
  if not _REPORT_ONLY.value:
    for grid, folder in parts:
      run_grid(grid, None, folder)
  print(regimes.report(results_dir))
  print(f"Wrote {results_dir}/results.md, regime_map.png and curves_mlp_60k.png")

if __name__ == "__main__":
  cli.run(main)
