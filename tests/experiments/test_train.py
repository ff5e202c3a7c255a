"""Tests for the training loop: schedule, metrics, errors, resumption, devices."""

import json
import os
import shutil
import subprocess
import sys

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds

from experiments import data as data_lib
from experiments import distributed
from experiments import evaluation
from experiments import steps
from experiments import train
from experiments.configs import default
from experiments.data import augment
from conftest import assert_records_close
from conftest import make_tiny_config as tiny_config
from conftest import make_tiny_dataset as tiny_dataset
from conftest import read_metrics
from conftest import REPO
from conftest import without_times


# ---------------------------------------------------------------------------
# The step and the schedule
# ---------------------------------------------------------------------------


def _numpy_mean_ce(logits, labels):
  logits = np.asarray(logits, np.float64)
  log_z = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1))
  log_p = logits - logits.max(1, keepdims=True) - log_z[:, None]
  return -np.mean(log_p[np.arange(len(labels)), labels])


def test_train_step_loss_is_mean_cross_entropy_of_its_batch():
  """The logged loss is the mean CE of the batch the permutation selects."""
  config = tiny_config(method="ce")
  mesh = distributed.make_mesh(1)
  data = train.load_data(config, tiny_dataset())
  images, labels = data.train_images, data.train_labels
  steps_per_epoch = len(labels) // config.batch_size
  method, state = train.build_method(
      config, image_shape=images.shape[1:], num_classes=10,
      num_train=len(labels), steps_per_epoch=steps_per_epoch,
      corruption_rate=data.corruption_rate,
  )
  spec = data_lib.get_spec("mnist")
  perm = steps.epoch_permutation(0, 1, len(labels))
  train_fn = steps.make_train_fn(
      method.train_step, spec, config, mesh, steps_per_epoch, 1
  )
  totals = steps.zero_metrics(method.train_step, state.method, images.shape[1:], config)
  assert set(totals) == {"train_loss", "train_running_acc"}
  arrays = steps.TrainArrays(images, labels, np.ones(len(labels), bool))
  new_state, totals = train_fn(state, totals, arrays, perm)
  assert int(new_state.step) == 1
  batch = np.asarray(perm[: config.batch_size])
  logits = method.predict(  # No BatchNorm in LeNet: train = eval mode.
      state.method, augment.normalize(images[batch], spec)
  )
  np.testing.assert_allclose(
      totals["train_loss"], _numpy_mean_ce(logits, labels[batch]), rtol=1e-5
  )
  np.testing.assert_allclose(
      totals["train_running_acc"],
      np.mean(np.argmax(logits, -1) == labels[batch]),
  )


def test_learning_rate_milestones_are_1_based_epochs():
  config = tiny_config(learning_rate=0.01, lr_milestones=(2, 3), lr_decay=0.1)
  schedule = train.learning_rate_schedule(config, steps_per_epoch=5)
  values = [float(schedule(s)) for s in (0, 4, 5, 9, 10, 100)]
  np.testing.assert_allclose(values, [1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-4])


def test_default_schedule_is_the_reference_codes_effective_schedule():
  """MultiStepLR([10, 20]) stepped at the start of every epoch (torch >= 1.1)
  gives 0.01 for 0-based epochs 0..8, 1e-3 for 9..18, 1e-4 from 19 on."""
  steps_per_epoch = 7
  schedule = train.learning_rate_schedule(default.get_config(), steps_per_epoch)
  per_epoch = [float(schedule(e * steps_per_epoch)) for e in range(25)]
  last_step_of_epoch = [
      float(schedule(e * steps_per_epoch + steps_per_epoch - 1)) for e in range(25)
  ]
  expected = [1e-2] * 9 + [1e-3] * 10 + [1e-4] * 6
  np.testing.assert_allclose(per_epoch, expected, rtol=1e-6)
  np.testing.assert_allclose(last_step_of_epoch, expected, rtol=1e-6)


# ---------------------------------------------------------------------------
# Metrics and summary
# ---------------------------------------------------------------------------


def test_accuracy_metrics_and_memorization():
  data = train.load_data(tiny_config(), tiny_dataset())
  flipped = data.train_labels != data.train_clean_labels
  assert 0 < flipped.sum() < len(flipped)
  # A model that predicts the noisy labels has memorized every flipped one.
  preds = {
      "train": data.train_labels,
      "val": data.val_clean_labels,
      "test": data.test_labels,
  }
  m = evaluation.accuracy_metrics(preds, data)
  assert m["train_acc"] == 1.0 and m["memorization"] == 1.0
  assert m["mislabeled_correct"] == 0.0 and m["test_acc"] == 1.0
  assert m["val_clean_acc"] == 1.0
  np.testing.assert_allclose(m["train_clean_acc"], 1 - flipped.mean())
  # One that predicts the clean labels has memorized none.
  m = evaluation.accuracy_metrics({**preds, "train": data.train_clean_labels}, data)
  assert m["memorization"] == 0.0 and m["mislabeled_correct"] == 1.0


def test_summary_reports_test_accuracy_at_first_best_validation_epoch():
  config = tiny_config()
  data = train.load_data(config, tiny_dataset())
  history = [
      {"epoch": 1, "val_acc": 0.5, "test_acc": 0.6, "epoch_time_s": 3.0,
       "memorization": 0.1},
      {"epoch": 2, "val_acc": 0.7, "test_acc": 0.8, "epoch_time_s": 1.0,
       "memorization": 0.2},
      {"epoch": 3, "val_acc": 0.7, "test_acc": 0.9, "epoch_time_s": 1.0,
       "memorization": 0.3},
      {"epoch": 4, "val_acc": 0.6, "test_acc": 0.7, "epoch_time_s": 1.0,
       "memorization": 0.4},
  ]
  for record in history:
    record["phase"] = "train"
  summary = evaluation.summarize(config, history, data, num_devices=1)
  assert summary["best_epoch"] == 2
  assert summary["test_acc_at_best_val"] == 0.8
  assert summary["last_test_acc"] == 0.7
  assert summary["seconds_per_epoch_median"] == 1.0
  assert summary["realized_noise_rate"] == data.realized_rate
  assert summary["corruption_rate"] == data.corruption_rate
  assert summary["warmups"] == {}


def test_a_warmup_method_reports_an_epoch_of_its_own_phase():
  """The warm-up's better epoch is reported beside, never as, the result."""
  config = tiny_config()
  data = train.load_data(config, tiny_dataset())
  rows = [("ce", 0.5, 0.6), ("ce", 0.9, 0.95), ("train", 0.7, 0.8),
          ("train", 0.8, 0.7)]
  history = [
      {"epoch": i, "phase": p, "val_acc": v, "test_acc": t,
       "epoch_time_s": 1.0, "memorization": 0.1}
      for i, (p, v, t) in enumerate(rows, 1)
  ]
  summary = evaluation.summarize(
      config, history, data, num_devices=1, warmup_phases=("ce",)
  )
  assert summary["best_epoch"] == 4
  assert summary["test_acc_at_best_val"] == 0.7
  assert summary["warmups"] == {
      "ce": {"best_epoch": 2, "val_acc": 0.9, "test_acc": 0.95}
  }


# ---------------------------------------------------------------------------
# Configuration errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
        ({"model": "vgg"}, "model='vgg': expected one of"),
        ({"method": "no_such_method"}, "method='no_such_method': expected one of"),
        ({"noise_type": "gaussian"}, "noise_type='gaussian': expected one of"),
        ({"noise_rate": 1.0}, r"noise_rate=1.0: expected a finite number >= 0 and < 1"),
        ({"noise_rate": -0.1}, r"noise_rate=-0.1: expected"),
        ({"batch_size": 0}, "batch_size=0: expected an integer >= 1"),
        ({"lr_milestones": (20, 10)}, "lr_milestones=\\(20, 10\\): expected .* strictly increasing"),
        ({"lr_milestones": (0, 10)}, "lr_milestones=\\(0, 10\\): expected .* >= 1"),
        ({"num_train_examples": 5}, r"num_train_examples must be in \[10, 160\]"),
        ({"num_devices": 99}, "num_devices=99"),
    ],
)
def test_bad_config_raises(tmp_path, overrides, error):
  with pytest.raises(ValueError, match=error):
    train.train_and_evaluate(tiny_config(**overrides), str(tmp_path), tiny_dataset())


def test_missing_data_dir_raises(tmp_path):
  config = tiny_config(data_source="idx", data_dir=str(tmp_path / "nothing"))
  with pytest.raises(FileNotFoundError, match="nothing"):
    train.train_and_evaluate(config, str(tmp_path / "work"))


# ---------------------------------------------------------------------------
# End to end and resumption
# ---------------------------------------------------------------------------


def test_end_to_end_and_resume_after_interruption(tmp_path):
  dataset = tiny_dataset()
  full_dir, resumed_dir = str(tmp_path / "full"), str(tmp_path / "resumed")

  full = train.train_and_evaluate(tiny_config(), full_dir, dataset)
  history = read_metrics(full_dir)
  assert [r["epoch"] for r in history] == [1, 2, 3]
  assert [r["learning_rate"] for r in history] == pytest.approx([1e-2, 1e-2, 1e-3])
  for r in history:
    # At least 1 - tau; more when scores tie at the threshold (e.g. many
    # zero gradients of dead units: ties are all critical, as in the paper's
    # code).
    assert 0.8 - 1e-3 <= r["critical_fraction"] <= 1
    assert 0 <= r["memorization"] <= 1 and 0 <= r["test_acc"] <= 1
  assert full["epochs"] == 3 and full["num_train"] == 144
  with open(os.path.join(full_dir, "summary.json")) as f:
    assert json.load(f) == json.loads(json.dumps(full))

  # Killed after one epoch, then resumed.
  assert (
      train.train_and_evaluate(
          tiny_config(stop_after_epochs=1), resumed_dir, dataset
      )
      is None
  )
  assert len(read_metrics(resumed_dir)) == 1
  assert not os.path.exists(os.path.join(resumed_dir, "summary.json"))
  with pytest.raises(ValueError, match="another configuration.*method"):
    train.train_and_evaluate(tiny_config(method="ce"), resumed_dir, dataset)
  resumed = train.train_and_evaluate(tiny_config(), resumed_dir, dataset)

  # Bit-identical: every metric of every epoch, not just the summary.
  assert without_times(read_metrics(resumed_dir)) == without_times(history)
  drop = ("config", "seconds_per_epoch_median", "seconds_per_epoch_mean")
  assert {k: v for k, v in resumed.items() if k not in drop} == {
      k: v for k, v in full.items() if k not in drop
  }

  # Killed after writing epoch 2's metrics but before its checkpoint: the
  # extra record is dropped on resume, and the result is still the same.
  killed_dir = str(tmp_path / "killed")
  train.train_and_evaluate(tiny_config(stop_after_epochs=2), killed_dir, dataset)
  shutil.rmtree(os.path.join(killed_dir, "checkpoints", "2"))
  assert len(read_metrics(killed_dir)) == 2
  train.train_and_evaluate(tiny_config(), killed_dir, dataset)
  assert without_times(read_metrics(killed_dir)) == without_times(history)


def test_scan_chunks_match_per_step_calls(tmp_path):
  """steps_per_call changes how steps are dispatched, not what they compute."""
  dataset = tiny_dataset()
  # 9 steps per epoch: chunks of 4 + 4 + 1.
  config = tiny_config(model="mlp", mlp_hidden=(32,), num_epochs=2)
  per_step = train.train_and_evaluate(config, str(tmp_path / "a"), dataset)
  config.steps_per_call = 4
  scanned = train.train_and_evaluate(config, str(tmp_path / "b"), dataset)
  a = without_times(read_metrics(str(tmp_path / "a")))
  b = without_times(read_metrics(str(tmp_path / "b")))
  assert_records_close(a, b, rel=1e-4, abs_=1e-6)
  assert per_step["test_acc_at_best_val"] == scanned["test_acc_at_best_val"]


def test_tfds_source_end_to_end(tmp_path):
  with tfds.testing.mock_data(num_examples=64):
    summary = train.train_and_evaluate(
        tiny_config(data_source="tfds", num_epochs=1, method="ce"), str(tmp_path)
    )
  assert summary["num_train"] + summary["num_val"] == 64
  assert summary["epochs"] == 1


# ---------------------------------------------------------------------------
# Data parallelism
# ---------------------------------------------------------------------------


def _steps_on(num_devices, config, dataset, num_steps):
  """The network after `num_steps` steps, and test predictions, on a mesh."""
  mesh = distributed.make_mesh(num_devices)
  replicated = NamedSharding(mesh, P())
  data = train.load_data(config, dataset)
  steps_per_epoch = len(data.train_labels) // config.batch_size
  method, state = train.build_method(
      config, image_shape=data.train_images.shape[1:], num_classes=10,
      num_train=len(data.train_labels), steps_per_epoch=steps_per_epoch,
      corruption_rate=data.corruption_rate,
  )
  state = jax.device_put(state, replicated)
  arrays = jax.device_put(
      steps.TrainArrays(
          data.train_images, data.train_labels, np.ones(len(data.train_labels), bool)
      ),
      replicated,
  )
  test = evaluation.to_device(data.test_images, data.test_labels, 16, mesh)
  perm = jax.device_put(
      steps.epoch_permutation(0, 1, len(data.train_labels)), replicated
  )
  spec = data_lib.get_spec(config.dataset)
  train_fn = steps.make_train_fn(
      method.train_step, spec, config, mesh, steps_per_epoch, 1
  )
  totals = steps.zero_metrics(
      method.train_step, state.method, data.train_images.shape[1:], config
  )
  for _ in range(num_steps):
    state, totals = train_fn(state, totals, arrays, perm)
  predict_fn = evaluation.make_predict_fn(method, spec, 16, mesh)
  preds = np.argmax(evaluation.predict_split(predict_fn, state.method, test, 16), -1)
  return jax.device_get(state.method.net), preds


def _in_subprocess_with_8_devices(test_id):
  """Reruns a test in a fresh process with 8 CPU devices (XLA_FLAGS must be
  set before jax starts)."""
  env = dict(
      os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8"
  )
  result = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
       f"{__file__}::{test_id}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
  )
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.parametrize(
    "model, shape, tol",
    [
        pytest.param("lenet5", (28, 28, 1), 1e-4, id="lenet5"),
        # BatchNorm: its statistics must be over the global batch. The tiny
        # ResNet on synthetic 16x16 images is ill-conditioned (a 1-ulp change
        # of the inputs moves its gradient by ~1%), hence the looser bound.
        pytest.param(
            "resnet18", (16, 16, 1), 1e-2, id="resnet18", marks=pytest.mark.slow
        ),
    ],
)
def test_data_parallel_matches_single_device(model, shape, tol, tmp_path):
  if jax.device_count() < 8:
    _in_subprocess_with_8_devices(
        f"test_data_parallel_matches_single_device[{model}]"
    )
    return
  dataset = tiny_dataset(shape=shape)
  initial, _ = _steps_on(1, tiny_config(model=model), dataset, num_steps=0)
  runs = {
      n: _steps_on(n, tiny_config(model=model), dataset, num_steps=1)
      for n in (1, 8)
  }
  updates = {
      n: jax.tree.map(np.subtract, state.params, initial.params)
      for n, (state, _) in runs.items()
  }
  difference = jax.tree.map(np.subtract, updates[1], updates[8])
  assert optax.tree.norm(difference) <= tol * optax.tree.norm(updates[1])
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
      runs[1][0].batch_stats,
      runs[8][0].batch_stats,
  )
  assert np.mean(runs[1][1] == runs[8][1]) >= 0.95
  if model == "lenet5":
    # The whole loop (evaluation, checkpoints of sharded arrays) on 8 devices.
    summary = train.train_and_evaluate(
        tiny_config(num_epochs=1), str(tmp_path), dataset
    )
    assert summary["num_devices"] == 8


def test_a_run_is_not_resumed_with_another_epoch_budget(tmp_path):
  """Methods derive phases and schedules from num_epochs (warm-ups, R(t),
  Joint's stages): a changed budget is another run."""
  dataset = tiny_dataset()
  stopped = tiny_config(stop_after_epochs=1)
  assert train.train_and_evaluate(stopped, str(tmp_path), dataset) is None
  with pytest.raises(ValueError, match=r"another configuration \(num_epochs: 3 -> 5\)"):
    train.train_and_evaluate(tiny_config(num_epochs=5), str(tmp_path), dataset)
