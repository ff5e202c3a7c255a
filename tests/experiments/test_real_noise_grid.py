"""The real_noise preset: CE and both CDR flavours on the five real-noise
configs, each with its own epochs, schedule and labels; checked without
data, as `reproduce --grid=real_noise` checks them before training."""

import dataclasses
import json
import os

from absl import flags
import pytest

from experiments import grid as grid_lib
from experiments import report
from experiments import reproduce
from experiments import run_config

_OWN = {  # config -> (dataset, epochs, milestones, label field, tau)
    "food101_resnet50": ("food101", 30, (10, 20), None, 0.2),
    "webvision_mini_inception_resnet_v2": ("webvision_mini", 100, (40, 80),
                                           None, 0.2),
    "clothing1m_resnet50": ("clothing1m", 10, (6,), None, 0.385),
    "cifar10n_resnet34": ("cifar10_n", 100, (61,), "aggre_label", 0.0903),
    "cifar100n_resnet34": ("cifar100_n", 100, (61,), "noise_label", 0.402),
}


@pytest.fixture
def parsed_flags():
  def parse(*argv):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["reproduce", *argv])
  yield parse
  flags.FLAGS.unparse_flags()


def test_every_cell_validates_with_its_own_protocol(parsed_flags, tmp_path):
  parsed_flags("--grid=real_noise")
  grid, milestones = reproduce.resolve_grid()
  planned = reproduce.plan(grid, milestones, str(tmp_path))  # Validates each.
  assert len(planned) == 5 * 3
  assert {run[3] for run, _, _ in planned} == {"ce", "cdr_ref", "cdr_paper"}
  for run, config, workdir in planned:
    dataset, epochs, schedule, field, tau = _OWN[run[0]]
    assert (config.dataset, config.num_epochs) == (dataset, epochs)
    assert tuple(config.lr_milestones) == schedule
    assert (config.noise_type, config.noise_rate) == ("real", 0.0)
    assert config.label_field == field
    assert config.input_pipeline == "grain"
    if config.method != "ce":
      assert config.method_args[config.method].tau == tau
    assert workdir == os.path.join(str(tmp_path), "runs", run[0], "real_0",
                                   run[3], "seed0")


def test_a_budget_flag_still_applies_to_every_config(parsed_flags, tmp_path):
  parsed_flags("--grid=real_noise", "--num_epochs=6", "--methods=cdr_ref",
               "--data_dir=/data/clothing1m", "--configs=clothing1m_resnet50")
  grid, milestones = reproduce.resolve_grid()
  (_, config, _), = reproduce.plan(grid, milestones, str(tmp_path))
  # The budget scales the config's schedule (6 -> 4 of 6 epochs, 2/3).
  assert (config.num_epochs, tuple(config.lr_milestones)) == (6, (4,))
  assert config.data_dir == "/data/clothing1m"


def test_own_budget_keeps_each_config_and_explicit_milestones_win():
  grid = grid_lib.PRESETS["real_noise"]
  run = ("clothing1m_resnet50", "real", 0.0, "ce", 0)
  assert grid_lib.make_config(grid, run, None, {}).num_epochs == 10
  config = grid_lib.make_config(grid, run, (3, 7), {})
  assert (config.num_epochs, tuple(config.lr_milestones)) == (10, (3, 7))
  run_config.validate(config)


def test_report_says_each_config_keeps_its_schedule(tmp_path):
  grid = dataclasses.replace(
      grid_lib.PRESETS["real_noise"], configs=("cifar10n_resnet34",))
  for method in grid.methods:
    workdir = grid_lib.run_dir(str(tmp_path), "cifar10n_resnet34", "real",
                               0.0, method, 0)
    os.makedirs(workdir)
    history = [{"epoch": e, "val_acc": 0.5, "test_acc": 0.6,
                "memorization": 0.1} for e in (1, 2)]
    summary = {"dataset": "cifar10_n", "model": "resnet34", "seed": 0,
               "config": {"seed": 0}, "num_train": 45000,
               "best_val_acc": 0.5, "test_acc_at_best_val": 0.6,
               "last_test_acc": 0.6, "last_memorization": 0.1,
               "realized_noise_rate": 0.09, "seconds_per_epoch_median": 1.0}
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in history)
  text = report.report(grid, None, str(tmp_path))
  assert f"; {grid_lib.OWN_SCHEDULE}.\n" in text
  assert "None" not in text
  assert (tmp_path / "test_accuracy.png").read_bytes()[:4] == b"\x89PNG"
