"""Tests for the grid report: tables, the noise-rate sections and the plots,
on synthetic runs (no training)."""

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from experiments import divergence
from experiments import errors
from experiments import grid as grid_lib
from experiments import methods
from experiments import packs
from experiments import plots
from experiments import rate_report
from experiments import regimes
from experiments import report
from experiments import reproduce
from experiments import run_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(seed, val, test, *, precision=None, method_report=None, epochs=3):
  history = [
      {"epoch": e + 1, "val_acc": val * (e + 1) / epochs,
       "test_acc": test * (e + 1) / epochs, "memorization": 0.1 * e,
       **({"label_precision": precision} if precision is not None else {})}
      for e in range(epochs)
  ]
  summary = {
      "dataset": "fashion_mnist", "model": "mlp", "seed": seed,
      "best_val_acc": val, "test_acc_at_best_val": test,
      "last_test_acc": test, "last_memorization": 0.2,
      "realized_noise_rate": 0.41, "seconds_per_epoch_median": 1.0,
      **({"method_report": method_report} if method_report else {}),
  }
  return {"summary": summary, "history": history}


def _grid(methods, **kw):
  return grid_lib.Grid(("cfg",), ("symmetric",), (0.4,), methods, (0, 1), 3, **kw)


def test_grid_seeds_per_method_and_the_seeds_flag_override():
  g = grid_lib.PRESETS["memorize_table"]
  runs = grid_lib.runs(g)
  assert sum(r[3] == "ce" for r in runs) == 8 * 3
  assert sum(r[3] == "gce" for r in runs) == 8 * 2
  assert {r[4] for r in runs if r[3] == "s2e"} == {0, 1}
  assert {grid_lib.parse_method(m)[0] for m in g.methods} == (
      set(methods.REGISTRY) - set(grid_lib.NOT_IN_TABLE)
  )
  assert g.config_of("coteaching_plus") == {"batch_size": 128}
  assert g.config_of("coteaching") == {}
  # What --seeds does: every method gets those seeds.
  overridden = dataclasses.replace(g, seeds=(5,), method_seeds=())
  assert {r[4] for r in grid_lib.runs(overridden)} == {5}


def test_split_constant_is_located_by_validation_not_test():
  g = _grid(("cdr_ref:tau=0.2", "cdr_ref:tau=0.4", "cdr_ref:tau=0.6"))
  setting = ("cfg", "symmetric", 0.4)
  runs = {
      (*setting, "cdr_ref:tau=0.2"): [_run(0, 0.50, 0.90), _run(1, 0.50, 0.90)],
      (*setting, "cdr_ref:tau=0.4"): [_run(0, 0.60, 0.70), _run(1, 0.62, 0.72)],
      (*setting, "cdr_ref:tau=0.6"): [_run(0, 0.55, 0.80)],
  }
  assert rate_report.swept_taus(g) == {
      "cdr_ref:tau=0.2": 0.2, "cdr_ref:tau=0.4": 0.4, "cdr_ref:tau=0.6": 0.6
  }
  text = rate_report.split_constant_section(g, runs)
  # located 0.40 (val 0.61), paper's F-MNIST sym 40 = 0.40, test 71.00 there
  # and at tau = rate; the best test (90.00) is at 0.20.
  assert "| sym 40 | 0.40 | 0.40 | 0.40 | 71.00 | 71.00 | 90.00 (0.20) |" in text
  # Not a sweep: no section, no plot.
  assert rate_report.split_constant_section(_grid(("ce", "cdr_ref")), runs) == ""
  assert rate_report.swept_taus(_grid(("cdr_ref:tau=0.2", "ce"))) is None


def test_split_constant_plot_is_written(tmp_path):
  g = _grid(("cdr_ref:tau=0.2", "cdr_ref:tau=0.4"))
  setting = ("cfg", "symmetric", 0.4)
  runs = {(*setting, m): [_run(0, 0.5, 0.7)] for m in g.methods}
  assert rate_report.plot_split_constant(g, runs, tmp_path / "s.png")
  assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
  assert not rate_report.plot_split_constant(_grid(("ce",)), runs, tmp_path / "t.png")
  assert not (tmp_path / "t.png").exists()


def test_estimates_section_sets_estimates_beside_truth_and_oracle():
  g = _grid(("cdr_ref", "cdr_ref:tau_source='anchor'", "forward", "ce"))
  setting = ("cfg", "symmetric", 0.4)
  runs = {
      (*setting, "cdr_ref"): [_run(0, 0.6, 0.80)],
      (*setting, "cdr_ref:tau_source='anchor'"): [
          _run(0, 0.6, 0.70, method_report={"estimated_tau": 0.30}),
          _run(1, 0.6, 0.74, method_report={"estimated_tau": 0.36}),
      ],
      (*setting, "forward"): [_run(0, 0.6, 0.75, method_report={
          "noise_rate_hat": 0.38, "cl_noise_rate_hat": 0.42,
          "max_abs_error": 0.1, "cl_max_abs_error": 0.2})],
      (*setting, "ce"): [_run(0, 0.6, 0.7)],
  }
  text = rate_report.estimates_section(g, runs)
  assert ("| sym 40 | cdr_ref:tau_source='anchor' | 0.40 (0.410) | 0.330 | - "
          "| - | - | 72.00 | 80.00 |") in text
  assert "| sym 40 | forward | 0.40 (0.410) | 0.380 | 0.420 | 0.100 | 0.200 | 75.00 | - |" in text
  assert "| ce |" not in text and "| cdr_ref |" not in text
  assert rate_report.estimates_section(_grid(("ce",)), {(*setting, "ce"): []}) == ""


def test_label_precision_table_and_plot_only_for_methods_that_select(tmp_path):
  g = _grid(("ce", "coteaching"))
  setting = ("cfg", "symmetric", 0.4)
  runs = {
      (*setting, "ce"): [_run(0, 0.6, 0.7), _run(1, 0.6, 0.7)],
      (*setting, "coteaching"): [_run(0, 0.6, 0.8, precision=0.9),
                                 _run(1, 0.6, 0.8, precision=0.8)],
  }
  text = report.markdown_report(g, (), runs)
  section = text[text.index("## Label precision"):]
  assert "| coteaching | 85.00+-7.07 |" in section
  assert "| ce |" not in section.split("## Selected")[0]
  assert plots.plot_curves(g, runs, "label_precision", "p", tmp_path / "p.png", (2,))
  only_ce = {k: v for k, v in runs.items() if k[3] == "ce"}
  only_ce[(*setting, "coteaching")] = []
  assert not plots.plot_curves(g, only_ce, "label_precision", "p", tmp_path / "q.png")
  assert not (tmp_path / "q.png").exists()
  assert "## Label precision" not in report.markdown_report(g, (), only_ce)


def test_mean_curve_is_per_epoch_and_stops_at_the_shortest_run():
  a = [{"m": 0.2}, {"m": 0.4}, {"m": 0.6}]
  b = [{"m": 0.4}, {"m": 0.6}]
  assert plots.mean_curve([a, b], "m") == pytest.approx([0.3, 0.5])
  assert plots.mean_curve([a], "other") is None
  # An epoch nobody logged (an empty selection) is a gap, not the end.
  gap = plots.mean_curve([[{"m": 0.2}, {"m": None}, {"m": 0.6}]], "m")
  assert gap[0] == 0.2 and math.isnan(gap[1]) and gap[2] == 0.6


def test_report_of_a_partial_grid(tmp_path):
  """--report_only while a grid runs: the first setting has no runs yet and
  each method has runs in one setting only; a stale figure is removed."""
  config = "fashion_mnist_mlp_memorize"
  g = grid_lib.Grid((config,), ("symmetric",), (0.2, 0.4),
                    ("cdr_ref:tau=0.2", "cdr_ref:tau=0.4"), (0,), 3)
  run = _run(0, 0.5, 0.7)
  workdir = grid_lib.run_dir(str(tmp_path), config, "symmetric", 0.4,
                             "cdr_ref:tau=0.4", 0)
  os.makedirs(workdir)
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(run["summary"], f)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in run["history"])
  (tmp_path / "label_precision.png").write_bytes(b"old")
  markdown = report.report(g, None, str(tmp_path))
  assert "| cdr_ref:tau=0.4 | - | 70.00 (n=1) |" in markdown
  assert "| sym 40 | 0.40 | 0.40 | 0.40 | 70.00 | 70.00 | 70.00 (0.40) |" in markdown
  for name in ("test_accuracy.png", "memorization.png", "split_constant.png"):
    assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
  assert not (tmp_path / "label_precision.png").exists()


def _write_workdir(results_dir, run, record, arrays=None):
  workdir = grid_lib.run_dir(str(results_dir), *run)
  os.makedirs(workdir)
  summary = dict(record["summary"], config={"seed": run[-1]})
  for key, value in (arrays or {}).items():
    np.save(os.path.join(workdir, f"{key}.npy"), value)
    summary.setdefault("method_report", {})[key] = f"{key}.npy"
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in record["history"])


def _files(folder):
  """The folder's files (not its workdirs, nor the lock of who wrote it)."""
  return {p.name: p.read_bytes() for p in folder.iterdir()
          if p.is_file() and not p.name.startswith(".")}


def test_the_pack_alone_makes_the_folder_again_bit_for_bit(tmp_path):
  """Workdirs -> pack + report; the pack in another folder -> the same files."""
  config = "fashion_mnist_mlp_memorize"
  g = grid_lib.Grid((config,), ("pairflip",), (0.4,), ("ce", "coteaching"),
                    (0, 1, 2), 3)
  folder = tmp_path / "grid"
  for k, run in enumerate(grid_lib.runs(g)[:-1]):  # one run not finished
    precision = 0.9 if run[3] == "coteaching" else None
    arrays = {"noisy_ids": np.arange(k, dtype=np.int32)} if precision else None
    _write_workdir(folder, run, _run(run[4], 0.5 + k / 100, 0.7 + k / 100,
                                     precision=precision), arrays)
  report.report(g, None, str(folder))
  made = _files(folder)
  assert set(made) == {"results.md", "runs.jsonl.gz", "test_accuracy.png",
                       "memorization.png", "label_precision.png"}
  assert made["results.md"].startswith(b"# Results: grid\n")
  header, packed = packs.read(str(folder / packs.FILENAME))
  assert len(packed) == len(grid_lib.runs(g)) - 1
  assert packs.grid_of(header) == (g, None)
  last = grid_lib.runs(g)[-2]
  assert packed[last]["history"][-1]["label_precision"] == 0.9
  np.testing.assert_array_equal(packs.array(packed[last], "noisy_ids"),
                                np.arange(4, dtype=np.int32))

  # The same runs pack to the same bytes; workdirs gone, the pack suffices.
  shutil.rmtree(folder / "runs")
  report.report(g, None, str(folder))
  assert _files(folder) == made

  # Elsewhere, from the pack alone, through the command line.
  result = subprocess.run(
      [sys.executable, "-m", "experiments.reproduce",
       f"--from={folder / packs.FILENAME}",
       f"--results_dir={tmp_path / 'again'}"],
      cwd=REPO, capture_output=True, text=True, timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert _files(tmp_path / "again") == made


def test_a_run_in_the_pack_is_finished_and_its_configuration_checked(tmp_path):
  g = grid_lib.PRESETS["main"]
  run = grid_lib.runs(g)[0]
  config = grid_lib.make_config(g, run, None, {})
  workdir = grid_lib.run_dir(str(tmp_path), *run)
  record = {"run": list(run), "summary": {"config": run_config.as_dict(config)}}
  assert not reproduce.is_finished(workdir, config)
  assert reproduce.is_finished(workdir, config, ("p.gz", record))
  other = grid_lib.make_config(dataclasses.replace(g, num_epochs=7), run, None, {})
  with pytest.raises(errors.UserError, match=r"^p.gz \(run fashion_mnist_mlp_"
                     r"memorize symmetric 0.4 ce 0\) holds a finished run with "
                     r"another configuration \(num_epochs: 50 -> 7"):
    reproduce.is_finished(workdir, other, ("p.gz", record))


def test_regimes_reuse_a_packed_memorize_table(tmp_path):
  reused = ("fashion_mnist_mlp_memorize", "pairflip", 0.4, "cdr_ref", 1)
  packs.write(str(tmp_path / "table"), {"name": "table"},
              {reused: {"run": list(reused), **_run(1, 0.6, 0.75)}})
  runs = regimes.load(str(tmp_path / "map"), str(tmp_path / "table"))
  assert [r["summary"]["test_acc_at_best_val"]
          for r in runs[reused[:-1]]] == [0.75]


def test_a_broken_pack_is_one_clear_error(tmp_path):
  (tmp_path / "runs.jsonl.gz").write_bytes(b"not gzip")
  with pytest.raises(errors.UserError, match="runs.jsonl.gz is not a runs pack"):
    packs.read(str(tmp_path / "runs.jsonl.gz"))


def test_a_note_in_the_pack_stays_in_the_title(tmp_path):
  """A folder marked with the commit that made its runs keeps the mark."""
  g = grid_lib.Grid(("fashion_mnist_mlp_memorize",), ("symmetric",), (0.4,),
                    ("ce",), (0,), 3)
  _write_workdir(tmp_path, grid_lib.runs(g)[0], _run(0, 0.5, 0.7))
  report.report(g, None, str(tmp_path))
  header, runs = packs.read(str(tmp_path / packs.FILENAME))
  packs.write(str(tmp_path), {**header, "note": "runs of abc123"}, runs)
  report.report(g, None, str(tmp_path))
  first = (tmp_path / "results.md").read_text().splitlines()[0]
  assert first == f"# Results: {tmp_path.name} (runs of abc123)"
  assert packs.read_header(str(tmp_path / packs.FILENAME))["note"] == "runs of abc123"


def test_a_diverged_run_is_packed_and_still_reported(tmp_path):
  """No summary, but its divergence record: the table from the pack alone
  says 'diverged', and the grid does not train it again."""
  g = grid_lib.Grid(("fashion_mnist_mlp_memorize",), ("symmetric",), (0.4,),
                    ("ce",), (0, 1), 3)
  first, second = grid_lib.runs(g)
  _write_workdir(tmp_path, first, _run(0, 0.5, 0.7))
  config = grid_lib.make_config(g, second, None, {})
  workdir = grid_lib.run_dir(str(tmp_path), *second)
  os.makedirs(workdir)
  divergence.mark(workdir, config, divergence.Diverged("boom", 2, 14))
  text = report.report(g, None, str(tmp_path))
  assert "| ce | 70.00 (n=1), diverged |" in text
  shutil.rmtree(tmp_path / "runs")
  assert report.report(g, None, str(tmp_path)) == text
  _, packed = packs.read(str(tmp_path / packs.FILENAME))
  assert reproduce.is_finished(workdir, config, ("p", packed[second]))


def test_plot_styles_set_ce_and_cdr_apart():
  table = grid_lib.PRESETS["memorize_table"]
  style = plots.styles(list(table.methods))
  assert [style[m]["color"] for m in ("ce", "cdr_ref", "cdr_paper")] == [
      "black", "tab:blue", "tab:red"]
  others = {style[m]["color"] for m in table.methods[3:]}
  assert len(others) == 1 and others.isdisjoint(plots.STRONG.values())
  # Few methods: each its own colour, CE and CDR still in theirs.
  few = plots.styles(["ce", "coteaching", "cdr_ref:tau_source='anchor'"])
  assert few["ce"]["color"] == "black"
  assert len({s["color"] for s in few.values()}) == 3
  # A sweep of tau: colours in the order of tau, no muted line.
  sweep = plots.styles([f"cdr_ref:tau={t}" for t in (0.5, 0.1, 0.3)])
  order = sorted(sweep, key=lambda m: float(m.split("=")[1]))
  assert len({sweep[m]["color"] for m in order}) == 3
  assert all(sweep[m]["linewidth"] > 1 for m in order)


def test_a_figure_title_names_dataset_model_data_and_seeds():
  summaries = [{"dataset": "fashion_mnist", "model": "mlp", "num_train": 3600,
                "config": {"mlp_hidden": [1024, 1024]}}]
  assert plots.describe_runs(summaries) == (
      "Fashion-MNIST, MLP (hidden 1024-1024), 3,600 training images")
  g = _grid(("ce", "gce"), method_seeds=(("gce", (0,)),))
  style = plots.styles(list(g.methods))
  assert plots._seeds(g, list(g.methods), style) == (  # pylint: disable=protected-access
      "mean over seeds [0, 1] for ce; seeds [0] for gce")


def test_from_refuses_grid_flags_and_a_missing_pack(tmp_path):
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    flags.FLAGS(["reproduce", "--methods=ce", "--num_epochs=3"])
    with pytest.raises(errors.UserError, match=r"^--from takes the grid from "
                       r"the pack; --methods, --num_epochs cannot change it\.$"):
      reproduce.report_from(str(tmp_path / "runs.jsonl.gz"), str(tmp_path))
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["reproduce"])
    with pytest.raises(errors.UserError, match="^--from: no such file: "):
      reproduce.report_from(str(tmp_path / "runs.jsonl.gz"), str(tmp_path))
  finally:
    flags.FLAGS.unparse_flags()
