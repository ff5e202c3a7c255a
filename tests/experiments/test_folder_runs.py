"""Runs on a folder dataset (Clothing1M's release layout) through grain:
training, the protocol's sets, mid-epoch resumption, corrupt images."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from experiments import errors
from experiments import mid_epoch
from experiments import train
from tests.experiments.conftest import make_tiny_config
from tests.experiments.conftest import read_metrics
from tests.experiments.conftest import REPO
from tests.experiments.conftest import without_times
from tests.experiments.test_folders import _clothing1m

_FOLDER = dict(
    dataset="clothing1m", noise_type="real", input_pipeline="grain",
    model="mlp", mlp_hidden=(16,), image_size=8, batch_size=8,
    eval_batch_size=8, method="cdr_ref", checkpoint_every_steps=2,
)


def _config(root, **overrides):
  return make_tiny_config(data_dir=str(root), **{**_FOLDER, **overrides})


def test_folder_run_uses_the_release_sets(tmp_path):
  _clothing1m(tmp_path / "data")
  summary = train.train_and_evaluate(_config(tmp_path / "data", num_epochs=1),
                                     str(tmp_path / "run"))
  # Clothing1M selects on its clean validation list and tests on its test
  # list; its 42 noisy training images all train (5 batches of 8).
  assert summary["selected_on"] == "clean_val"
  assert (summary["num_train"], summary["num_val"], summary["num_test"]) == (42, 14, 14)
  record = read_metrics(str(tmp_path / "run"))[0]
  assert record["step"] == 5 and record["images_per_s"] > 0
  # 14 training labels are verified, 7 of them wrong: memorization is
  # measured on those 7 only.
  assert record["memorization"] is not None


class _Killed(Exception):
  pass


def test_mid_epoch_resume_equals_uninterrupted(tmp_path, monkeypatch):
  """A run stopped right after a mid-epoch checkpoint resumes at that batch
  (iterator state, running sums) and ends with the uninterrupted metrics."""
  _clothing1m(tmp_path / "data")
  config = _config(tmp_path / "data")
  whole = train.train_and_evaluate(config, str(tmp_path / "whole"))

  save = mid_epoch.Saver.after_call
  calls = []

  def save_then_die(self, state, totals, position):
    save(self, state, totals, position)
    calls.append(position["step"])
    if position["step"] == 7:  # Epoch 2, step 2 of 5: just checkpointed.
      raise _Killed

  monkeypatch.setattr(mid_epoch.Saver, "after_call", save_then_die)
  with pytest.raises(_Killed):
    train.train_and_evaluate(config, str(tmp_path / "resumed"))
  monkeypatch.setattr(mid_epoch.Saver, "after_call", save)
  resumed = train.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert without_times(read_metrics(str(tmp_path / "resumed"))) == \
      without_times(read_metrics(str(tmp_path / "whole")))
  assert resumed["test_acc_at_best_val"] == whole["test_acc_at_best_val"]


def test_corrupt_image_names_the_file_or_is_skipped(tmp_path):
  root = tmp_path / "data"
  _clothing1m(root)
  bad = root / "images/3/03/1003.jpg"
  bad.write_bytes(b"not a jpeg")
  with pytest.raises(errors.UserError, match="1003.jpg"):
    train.train_and_evaluate(_config(root, num_epochs=1), str(tmp_path / "a"))
  summary = train.train_and_evaluate(
      _config(root, num_epochs=1, skip_corrupt_images=True), str(tmp_path / "b"))
  assert summary["skipped_images"] >= 1


def test_folder_dataset_needs_real_noise_and_grain(tmp_path):
  _clothing1m(tmp_path / "data")
  with pytest.raises(errors.UserError, match="noise_type='real'"):
    train.setup(_config(tmp_path / "data", noise_type="symmetric"))
  with pytest.raises(errors.UserError, match="input_pipeline='grain'"):
    train.setup(_config(tmp_path / "data", input_pipeline="device"))


def _main(root, workdir, epochs):
  flags = {**_FOLDER, "num_epochs": epochs, "num_workers": 2,
           "data_dir": str(root), "log_progress": False, "lr_milestones": "(3,)"}
  return [sys.executable, "-m", "experiments.main",
          "--config=experiments/configs/default.py", f"--workdir={workdir}",
          *(f"--config.{k}={v}" for k, v in flags.items())]


@pytest.mark.slow
def test_sigkill_mid_epoch_with_workers_resumes_exactly(tmp_path):
  """SIGKILL after a mid-epoch checkpoint (2 grain workers), relaunch: the
  metrics of an uninterrupted run."""
  root = tmp_path / "data"
  _clothing1m(root)
  subprocess.run(_main(root, tmp_path / "whole", 4), cwd=REPO, check=True,
                 capture_output=True)
  mid = tmp_path / "killed" / "checkpoints_mid_epoch"
  process = subprocess.Popen(_main(root, tmp_path / "killed", 4), cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    done = [int(d) for d in os.listdir(mid) if d.isdigit()] if mid.exists() else []
    if any(s % 5 and s > 5 for s in done):
      break
    time.sleep(0.01)
  process.send_signal(signal.SIGKILL)
  process.wait()
  out = subprocess.run(_main(root, tmp_path / "killed", 4), cwd=REPO,
                       check=True, capture_output=True, text=True).stdout
  assert "Resumed" in out
  assert without_times(read_metrics(tmp_path / "killed")) == \
      without_times(read_metrics(tmp_path / "whole"))
  with open(tmp_path / "whole" / "summary.json") as f:
    whole = json.load(f)
  with open(tmp_path / "killed" / "summary.json") as f:
    assert json.load(f)["test_acc_at_best_val"] == whole["test_acc_at_best_val"]
