"""Several runs in one program (jax.vmap over seeds) against separate runs."""

import copy
import os

import pytest

from experiments import errors
from experiments import many_runs
from experiments import train
from conftest import assert_records_close
from conftest import make_tiny_config
from conftest import make_tiny_dataset
from conftest import read_metrics
from conftest import without_times


def _configs(method="cdr_ref", seeds=(0, 1), **overrides):
  return [
      make_tiny_config(
          model="mlp", mlp_hidden=(16,), num_epochs=3, method=method, seed=s,
          **overrides,
      )
      for s in seeds
  ]


@pytest.mark.parametrize(
    "method, args",
    [("cdr_ref", {}), ("coteaching", {}),
     # A hand-over of the best CE epoch and a phase at its own batch.
     ("dmi", {"ce_epochs": 2, "batch_size": 48})],
)
def test_group_matches_separate_runs_and_resumes(method, args, tmp_path):
  dataset = make_tiny_dataset()
  configs = _configs(method)
  for config in configs:
    config.method_args[method].update(args)
  separate = [
      train.train_and_evaluate(c, str(tmp_path / f"alone{c.seed}"), dataset)
      for c in configs
  ]
  workdirs = [str(tmp_path / f"grouped{c.seed}") for c in configs]
  grouped = many_runs.train_and_evaluate_many(
      configs, workdirs, str(tmp_path / "group"), dataset
  )
  for config, alone, together, workdir in zip(configs, separate, grouped, workdirs):
    a = without_times(read_metrics(str(tmp_path / f"alone{config.seed}")))
    b = without_times(read_metrics(workdir))
    assert len(a) == 3
    # The same computation, batched: equal up to float reassociation.
    assert_records_close(a, b, rel=1e-4, abs_=1e-4)
    assert together["test_acc_at_best_val"] == pytest.approx(
        alone["test_acc_at_best_val"], abs=1e-3
    )
    assert os.path.exists(os.path.join(workdir, "config.json"))

  # Killed after one epoch, the group resumes bit-identically.
  stopped = [copy.deepcopy(c) for c in configs]
  for c in stopped:
    c.stop_after_epochs = 1
  resumed = [str(tmp_path / f"resumed{c.seed}") for c in configs]
  assert many_runs.train_and_evaluate_many(
      stopped, resumed, str(tmp_path / "group2"), dataset
  ) is None
  many_runs.train_and_evaluate_many(configs, resumed, str(tmp_path / "group2"), dataset)
  for a, b in zip(workdirs, resumed):
    assert without_times(read_metrics(a)) == without_times(read_metrics(b))


def test_runs_in_one_program_must_differ_in_seed_only():
  configs = _configs()
  configs[1].noise_rate = 0.3
  with pytest.raises(errors.UserError, match=r"differ in \['noise_rate'\]"):
    many_runs.group_config(configs)
