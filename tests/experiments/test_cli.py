"""Tests for the command lines: experiments.main and experiments.reproduce."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import grid
from experiments import packs
from conftest import TIME_FIELDS
from conftest import make_tiny_dataset as tiny_dataset
from conftest import read_metrics
from conftest import REPO


def _idx_bytes(array):
  header = np.array((0x0800 | array.ndim,) + array.shape, ">u4").tobytes()
  return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(directory, dataset):
  os.makedirs(directory, exist_ok=True)
  files = {
      "train-images-idx3-ubyte.gz": dataset.train.images[..., 0],
      "train-labels-idx1-ubyte.gz": dataset.train.labels,
      "t10k-images-idx3-ubyte.gz": dataset.test.images[..., 0],
      "t10k-labels-idx1-ubyte.gz": dataset.test.labels,
  }
  for name, array in files.items():
    with gzip.open(os.path.join(directory, name), "wb") as f:
      f.write(_idx_bytes(array))


def _run_main(*args):
  return subprocess.run(
      [sys.executable, "-m", "experiments.main", *args],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
  )


def test_cli_overrides_and_idx_data(tmp_path):
  data_dir = str(tmp_path / "idx")
  write_idx_dataset(data_dir, tiny_dataset())
  workdir = str(tmp_path / "work")
  result = _run_main(
      "--config=experiments/configs/mnist_lenet.py",
      f"--workdir={workdir}",
      "--config.data_source=idx",
      f"--config.data_dir={data_dir}",
      "--config.model=mlp",
      "--config.mlp_hidden=(16,)",
      "--config.method=cdr_paper",
      "--config.noise_type=pairflip",
      "--config.noise_rate=0.3",
      "--config.method_args.cdr_paper.tau=0.5",
      "--config.num_epochs=2",
      "--config.lr_milestones=(2,)",
      "--config.batch_size=16",
      "--config.eval_batch_size=32",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  config = summary["config"]
  assert (config["model"], config["method"], config["noise_type"]) == (
      "mlp", "cdr_paper", "pairflip"
  )
  assert config["mlp_hidden"] == [16]
  # Only the chosen method's hyperparameters identify the run.
  assert config["method_args"] == {
      "tau": 0.5, "lam": 1e-3, "tau_source": "oracle", "warmup_epochs": None
  }
  assert summary["noise_rate"] == 0.3 and summary["epochs"] == 2
  history = read_metrics(workdir)
  assert [r["learning_rate"] for r in history] == pytest.approx([1e-2, 1e-3])
  assert history[0]["critical_fraction"] == pytest.approx(0.5, abs=1e-3)
  assert "summary.json" in result.stdout
  # The config goes to the workdir; the log has one rounded line per epoch.
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["method"] == "cdr_paper"
  assert "epoch 2/2, loss " in result.stdout and "critical 0.5" in result.stdout


def test_cli_errors_reach_the_user(tmp_path):
  result = _run_main(
      "--config=experiments/configs/mnist_lenet.py",
      f"--workdir={tmp_path}",
      "--config.method=no_such_method",
  )
  assert result.returncode != 0
  assert "error: method='no_such_method': expected one of" in result.stderr
  result = _run_main(
      "--config=experiments/configs/mnist_lenet.py",
      f"--workdir={tmp_path}",
      "--config.data_source=idx",
      f"--config.data_dir={tmp_path}/missing",
  )
  assert result.returncode != 0
  assert f"error: data_dir {tmp_path}/missing is not a directory" in result.stderr
  result = _run_main("--help")  # absl exits with status 1 after the help.
  assert "--config.noise_rate=0.4" in result.stdout + result.stderr


def test_reproduce_runs_a_grid_and_reports(tmp_path):
  data_dir = str(tmp_path / "idx")
  write_idx_dataset(data_dir, tiny_dataset())
  results = tmp_path / "results"
  command = [
      sys.executable, "-m", "experiments.reproduce", "--grid=main",
      "--configs=mnist_lenet", "--data_source=idx", f"--data_dir={data_dir}",
      "--noise_types=symmetric", "--noise_rates=0.2", "--methods=ce,cdr_ref",
      "--num_epochs=2", f"--results_dir={results}", "--nolog_progress",
  ]
  first = subprocess.run(
      command, cwd=REPO, capture_output=True, text=True, timeout=300
  )
  assert first.returncode == 0, first.stderr[-3000:]
  assert "[2/2] mnist_lenet symmetric 0.2 cdr_ref seed 0" in first.stdout
  assert "lr x0.1 from epochs [2]" in first.stdout
  table = (results / "results.md").read_text()
  assert "| method | sym 20 |" in table and "| cdr_ref | " in table
  for name in ("test_accuracy.png", "memorization.png", "runs.jsonl.gz"):
    assert (results / name).stat().st_size > 0
  # Finished runs are skipped; another budget in the same place is refused.
  second = subprocess.run(
      command, cwd=REPO, capture_output=True, text=True, timeout=300
  )
  assert second.returncode == 0 and "[1/" not in second.stdout
  assert "2 of 2 runs already finished" in second.stdout
  # Two seeds of a cell in one program (jax.vmap): same files per run.
  grouped = subprocess.run(
      command[:-2] + ["--methods=ce", "--seeds=0,1", "--runs_per_program=2",
                      f"--results_dir={tmp_path / 'grouped'}", "--nolog_progress"],
      cwd=REPO, capture_output=True, text=True, timeout=300,
  )
  assert grouped.returncode == 0, grouped.stderr[-3000:]
  assert "[1/1] mnist_lenet symmetric 0.2 ce seeds 0,1" in grouped.stdout
  cell = tmp_path / "grouped" / "runs" / "mnist_lenet" / "symmetric_20" / "ce"
  assert sorted(p.name for p in cell.iterdir()) == ["group_seeds0_1", "seed0", "seed1"]
  for seed in (0, 1):
    summary = json.loads((cell / f"seed{seed}" / "summary.json").read_text())
    assert summary["seed"] == seed and summary["epochs"] == 2
  third = subprocess.run(
      command[:-3] + ["--num_epochs=3", *command[-2:]],
      cwd=REPO, capture_output=True, text=True, timeout=300,
  )
  assert third.returncode != 0 and "another configuration" in third.stderr




def test_scaled_milestones_keep_the_reference_schedule_at_30_epochs():
  assert grid.scaled_milestones((10, 20), 30) == (10, 20)
  assert grid.scaled_milestones((10, 20), 24) == (8, 16)
  assert grid.scaled_milestones((40, 80), 300) == (100, 200)
  assert grid.scaled_milestones((), 10) == ()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.nosie_rate=0.3"],
         "error: unknown config field 'nosie_rate' Did you mean \"noise_rate\""),
        (["--config.noise_rate=abc"], "error: flag --config.noise_rate=abc"),
        (["--config.method=nope"], "error: method='nope': expected one of"),
        (["--config.method_args.cdr_ref.tau=2.0"],
         "error: method_args.cdr_ref.tau=2.0: expected a finite number >= 0 and <= 1, or None."),
    ],
)
def test_main_reports_mistakes_in_one_line(tmp_path, args, message):
  result = _run_main(
      "--config=experiments/configs/mnist_lenet.py", f"--workdir={tmp_path}", *args
  )
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[0].startswith(message), result.stderr
  assert "Traceback" not in result.stderr


def test_output_dirs_are_checked_before_anything_runs(tmp_path):
  from experiments import cli
  from experiments import errors

  afile = tmp_path / "afile"
  afile.write_text("x")
  with pytest.raises(errors.UserError, match="is a file, not a directory"):
    cli.check_output_dir(str(afile), "--workdir")
  with pytest.raises(errors.UserError, match="lies below .*afile, which is a file"):
    cli.check_output_dir(str(afile / "sub" / "dir"), "--workdir")
  readonly = tmp_path / "ro"
  readonly.mkdir()
  readonly.chmod(0o500)
  try:
    if not os.access(readonly, os.W_OK):  # root may write anyway.
      with pytest.raises(errors.UserError, match="is not writable"):
        cli.check_output_dir(str(readonly / "new"), "--results_dir")
  finally:
    readonly.chmod(0o700)
  cli.check_output_dir(str(tmp_path / "new" / "deeper"), "--workdir")  # Fine.
  # The command line says so in one line, before loading any data.
  result = _run_main(
      "--config=experiments/configs/mnist_lenet.py", f"--workdir={afile}"
  )
  assert result.stderr.strip() == f"error: --workdir {afile} is a file, not a directory."


def test_reproduce_checks_every_run_before_training_the_first(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "experiments.reproduce", "--grid=main",
       "--noise_types=symmetric,gaussian", f"--results_dir={tmp_path}"],
      cwd=REPO, capture_output=True, text=True, timeout=300,
  )
  assert result.returncode != 0
  assert "noise_type='gaussian': expected one of" in result.stderr
  assert not (tmp_path / "runs").exists()  # Nothing was trained.
  result = subprocess.run(
      [sys.executable, "-m", "experiments.reproduce", "--noise_rates=abc",
       f"--results_dir={tmp_path}"],
      cwd=REPO, capture_output=True, text=True, timeout=300,
  )
  assert result.stderr.strip() == (
      "error: --noise_rates must be a comma-separated list of floats, got 'abc'."
  )
  result = subprocess.run(
      [sys.executable, "-m", "experiments.reproduce", "--configs=nope",
       f"--results_dir={tmp_path}"],
      cwd=REPO, capture_output=True, text=True, timeout=300,
  )
  assert result.stderr.strip().startswith(
      "error: unknown config 'nope'; expected one of ['cifar100_resnet50',"
  )


def _strip_times(value):
  """Summaries and metrics without wall-clock fields."""
  if isinstance(value, dict):
    return {
        k: _strip_times(v) for k, v in value.items()
        if not (k.endswith("time_s") or k.startswith("seconds_per_epoch")
                or k in TIME_FIELDS)
    }
  if isinstance(value, list):
    return [_strip_times(v) for v in value]
  return value


def _grid_outputs(results):
  """Everything a grid wrote, minus wall-clock times; every file parses whole."""
  _, packed = packs.read(str(results / packs.FILENAME))
  out = {"summaries": _strip_times([r["summary"] for r in packed.values()])}
  tables = (results / "results.md").read_text()
  # The title names the directory; the cost table holds wall-clock times.
  out["tables"] = tables[tables.index("\n") : tables.index("## Cost")]
  for path in sorted(results.glob("runs/**/metrics.jsonl")):
    lines = path.read_text().splitlines()
    out[str(path.relative_to(results))] = _strip_times([json.loads(l) for l in lines])
  for path in sorted(results.glob("runs/**/summary.json")):
    out[str(path.relative_to(results))] = _strip_times(json.loads(path.read_text()))
  return out


@pytest.mark.slow
def test_grid_killed_at_random_moments_resumes_to_the_same_result(tmp_path):
  """SIGKILL during epochs, checkpoint saves or the report; rerun; same tables."""
  data_dir = str(tmp_path / "idx")
  write_idx_dataset(data_dir, tiny_dataset())

  def command(results):
    return [
        sys.executable, "-m", "experiments.reproduce", "--grid=main",
        "--configs=mnist_lenet", "--data_source=idx", f"--data_dir={data_dir}",
        "--noise_types=symmetric", "--noise_rates=0.2", "--methods=ce,cdr_ref",
        "--seeds=0", "--num_epochs=3", f"--results_dir={results}",
        "--nolog_progress",
    ]

  start = time.perf_counter()
  reference = subprocess.run(
      command(tmp_path / "reference"), cwd=REPO, capture_output=True, text=True,
      timeout=600,
  )
  assert reference.returncode == 0, reference.stderr[-3000:]
  duration = time.perf_counter() - start
  killed = tmp_path / "killed"
  rng = np.random.default_rng(0)
  for moment in sorted(rng.uniform(0.3, 1.0, 4) * duration):
    process = subprocess.Popen(
        command(killed), cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
      process.wait(timeout=moment)
    except subprocess.TimeoutExpired:
      process.send_signal(signal.SIGKILL)
      process.wait()
  final = subprocess.run(
      command(killed), cwd=REPO, capture_output=True, text=True, timeout=600
  )
  assert final.returncode == 0, final.stderr[-3000:]
  assert _grid_outputs(killed) == _grid_outputs(tmp_path / "reference")


def test_grid_methods_may_fix_arguments():
  assert grid.parse_method("cdr_ref") == ("cdr_ref", {})
  assert grid.parse_method("cdr_ref:tau=0.3") == ("cdr_ref", {"tau": 0.3})
  g = grid.PRESETS["tau_sweep"]
  assert [grid.parse_method(m)[1]["tau"] for m in g.methods] == pytest.approx(
      [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
  )
  config = grid.make_config(
      g, ("fashion_mnist_mlp_memorize", "symmetric", 0.4, "cdr_ref:tau=0.3", 0),
      None, {},
  )
  assert config.method == "cdr_ref" and config.method_args.cdr_ref.tau == 0.3
  assert "cdr_ref_tau=0.3" in grid.run_dir("r", "c", "symmetric", 0.4, "cdr_ref:tau=0.3", 0)
  from experiments import errors
  for spec, message in [
      ("cdr_ref:tua=0.3", "has no argument 'tua'"),
      ("cdr_ref:tau", "expected field=value"),
      ("cdr_ref:tau=abc", "is not a number"),
      ("nope:tau=0.1", "unknown method 'nope'"),
  ]:
    with pytest.raises(errors.UserError, match=message):
      grid.make_config(g, ("fashion_mnist_mlp_memorize", "symmetric", 0.4, spec, 0), None, {})
