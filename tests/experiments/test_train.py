"""Tests for the training loop, methods, configs, CLI and resumption."""

import gzip
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds

from experiments import input_pipeline
from experiments import methods
from experiments import train
from experiments.configs import default

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Fields that differ between two identical runs: wall-clock times.
_TIME_FIELDS = ("train_time_s", "epoch_time_s")


def tiny_dataset(n_train=160, n_test=48, shape=(28, 28, 1), seed=0):
  """Random images whose brightness depends on the class (learnable)."""
  rng = np.random.default_rng(seed)
  n = n_train + n_test
  labels = rng.integers(0, 10, n).astype(np.int32)
  images = rng.integers(0, 60, (n, *shape)) + 19 * labels[:, None, None, None]
  images = images.astype(np.uint8)
  return input_pipeline.Dataset(
      name="mnist",
      num_classes=10,
      train=input_pipeline.Split(images[:n_train], labels[:n_train]),
      test=input_pipeline.Split(images[n_train:], labels[n_train:]),
  )


def tiny_config(**overrides):
  config = default.get_config()
  config.dataset = "mnist"
  config.model = "lenet5"
  config.method = "cdr_ref"
  config.noise_type = "symmetric"
  config.noise_rate = 0.2
  config.batch_size = 16
  config.eval_batch_size = 32
  config.num_epochs = 3
  config.lr_milestones = (2,)
  config.log_progress = False
  for key, value in overrides.items():
    config[key] = value
  return config


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def without_times(records):
  return [{k: v for k, v in r.items() if k not in _TIME_FIELDS} for r in records]


# ---------------------------------------------------------------------------
# Loss, methods, schedule
# ---------------------------------------------------------------------------


def _numpy_mean_ce(logits, labels):
  logits = np.asarray(logits, np.float64)
  log_z = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1))
  log_p = logits - logits.max(1, keepdims=True) - log_z[:, None]
  return -np.mean(log_p[np.arange(len(labels)), labels])


@pytest.mark.parametrize("name", sorted(methods.METHODS))
def test_loss_is_mean_per_example_cross_entropy(name):
  logits = jax.random.normal(jax.random.key(0), (13, 10)) * 3
  labels = jax.random.randint(jax.random.key(1), (13,), 0, 10)
  loss = methods.get_method(name).loss(logits, labels, jnp.arange(13))
  assert loss.shape == ()
  np.testing.assert_allclose(loss, _numpy_mean_ce(logits, labels), rtol=1e-5)


def test_train_step_loss_is_mean_cross_entropy_of_its_batch():
  """The logged loss is the mean CE of the batch the permutation selects."""
  config = tiny_config(method="ce")
  mesh = train.make_mesh(1)
  data = train.load_data(config, tiny_dataset())
  images, labels = data.train_images, data.train_labels
  method = methods.get_method("ce")
  steps_per_epoch = len(labels) // config.batch_size
  tx = method.optimizer(config, train.learning_rate_schedule(config, 10))
  graphdef, state = train.create_train_state(config, images.shape[1:], 10, tx)
  perm = train.epoch_permutation(0, 1, len(labels))
  train_fn = train.make_train_fn(
      graphdef, method, tx, config, mesh, steps_per_epoch, 1
  )
  _, totals = train_fn(
      state,
      train.zero_totals(method, state.opt_state),
      jnp.asarray(images),
      jnp.asarray(labels),
      perm,
  )
  batch = np.asarray(perm[: config.batch_size])
  logits, _ = train.apply_model(
      graphdef,
      state.params,
      state.batch_stats,
      input_pipeline.normalize(images[batch], "mnist"),
      train=True,
  )
  np.testing.assert_allclose(
      totals["loss"], _numpy_mean_ce(logits, labels[batch]), rtol=1e-5
  )
  assert int(totals["correct"]) == int(
      np.sum(np.argmax(logits, -1) == labels[batch])
  )


def test_learning_rate_schedule_decays_at_epoch_starts():
  config = tiny_config(learning_rate=0.01, lr_milestones=(2, 3), lr_decay=0.1)
  schedule = train.learning_rate_schedule(config, steps_per_epoch=5)
  values = [float(schedule(s)) for s in (0, 9, 10, 14, 15, 100)]
  np.testing.assert_allclose(values, [1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-4])


def _one_update(tx, params, grads):
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


def test_method_optimizers():
  params = {"w": jnp.array([[0.5, -1.0], [2.0, 0.1]]), "b": jnp.array([0.3, -0.2])}
  grads = {"w": jnp.array([[1.0, 1.0], [0.1, -1.0]]), "b": jnp.array([1.0, 1.0])}
  config = tiny_config(noise_rate=0.5, weight_decay=1e-3, momentum=0.9)
  lr = 0.1

  # ce: torch's SGD(weight_decay): the first step is -lr * (g + wd * w).
  ce = _one_update(methods.get_method("ce").optimizer(config, lr), params, grads)
  jax.tree.map(
      lambda u, g, w: np.testing.assert_allclose(u, -lr * (g + 1e-3 * w), rtol=1e-6),
      ce, grads, params,
  )

  # cdr_ref: tau defaults to the noise rate (0.5): 2 of 4 kernel entries are
  # critical (scores |g*w| 0.5, 1.0, 0.2, 0.1), scaled by 1 - tau.
  ref = _one_update(methods.get_method("cdr_ref").optimizer(config, lr), params, grads)
  critical = np.array([[True, True], [False, False]])
  expected_w = -lr * (np.where(critical, 0.5 * grads["w"], 0.0) + 1e-3 * params["w"])
  np.testing.assert_allclose(ref["w"], expected_w, rtol=1e-6)
  np.testing.assert_allclose(
      ref["b"], -lr * (grads["b"] + 1e-3 * params["b"]), rtol=1e-6
  )

  # cdr_paper: lam * sign(w) on the kernels, no weight decay; cdr_tau
  # overrides the noise rate.
  config.cdr_tau = 0.25
  config.cdr_lam = 0.01
  paper = _one_update(
      methods.get_method("cdr_paper").optimizer(config, lr), params, grads
  )
  critical = np.array([[True, True], [True, False]])  # k = floor(0.75 * 4) = 3
  expected_w = -lr * (
      np.where(critical, 0.75 * grads["w"], 0.0) + 0.01 * np.sign(params["w"])
  )
  np.testing.assert_allclose(paper["w"], expected_w, rtol=1e-6)
  np.testing.assert_allclose(paper["b"], -lr * grads["b"], rtol=1e-6)


def test_critical_fraction_metric():
  config = tiny_config(noise_rate=0.25)
  tx = methods.get_method("cdr_ref").optimizer(config, 0.1)
  params = {"w": jnp.arange(1.0, 9.0).reshape(2, 4)}
  _, state = tx.update({"w": jnp.ones((2, 4))}, tx.init(params), params)
  metrics = methods.get_method("cdr_ref").optimizer_metrics(state)
  np.testing.assert_allclose(metrics["critical_fraction"], 6 / 8)
  assert methods.get_method("ce").optimizer_metrics(state) == {}


def test_unknown_method():
  with pytest.raises(ValueError, match="Unknown method 'coteaching'.*ce"):
    methods.get_method("coteaching")


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
  m = train.accuracy_metrics(preds, data)
  assert m["train_acc"] == 1.0 and m["memorization"] == 1.0
  assert m["mislabeled_correct"] == 0.0 and m["test_acc"] == 1.0
  assert m["val_clean_acc"] == 1.0
  np.testing.assert_allclose(m["train_clean_acc"], 1 - flipped.mean())
  # One that predicts the clean labels has memorized none.
  m = train.accuracy_metrics({**preds, "train": data.train_clean_labels}, data)
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
  summary = train.summarize(config, history, data, num_devices=1)
  assert summary["best_epoch"] == 2
  assert summary["test_acc_at_best_val"] == 0.8
  assert summary["last_test_acc"] == 0.7
  assert summary["seconds_per_epoch_median"] == 1.0
  assert summary["realized_noise_rate"] == data.realized_rate


# ---------------------------------------------------------------------------
# Configuration errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
        ({"model": "vgg"}, "Unknown model 'vgg'"),
        ({"method": "coteaching"}, "Unknown method 'coteaching'"),
        ({"noise_type": "gaussian"}, "Unknown noise_type 'gaussian'"),
        ({"noise_rate": 1.0}, r"noise_rate must be in \[0, 1\)"),
        ({"noise_rate": -0.1}, r"noise_rate must be in \[0, 1\)"),
        ({"cdr_tau": 1.0}, r"cdr_tau must be in \[0, 1\)"),
        ({"cdr_tau": -0.2}, r"cdr_tau must be in \[0, 1\)"),
        ({"batch_size": 0}, "batch_size=0 must be positive"),
        ({"lr_milestones": (20, 10)}, "lr_milestones must be increasing"),
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
  for ra, rb in zip(a, b):
    assert ra.keys() == rb.keys()
    for k in ra:
      assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-6), k
  assert per_step["test_acc_at_best_val"] == scanned["test_acc_at_best_val"]


def test_tfds_source_end_to_end(tmp_path):
  with tfds.testing.mock_data(num_examples=64):
    summary = train.train_and_evaluate(
        tiny_config(data_source="tfds", num_epochs=1, method="ce"), str(tmp_path)
    )
  assert summary["num_train"] + summary["num_val"] == 64
  assert summary["epochs"] == 1


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
      "--config.cdr_tau=0.5",
      "--config.num_epochs=2",
      "--config.lr_milestones=(1,)",
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
  assert config["mlp_hidden"] == [16] and config["cdr_tau"] == 0.5
  assert summary["noise_rate"] == 0.3 and summary["epochs"] == 2
  history = read_metrics(workdir)
  assert [r["learning_rate"] for r in history] == pytest.approx([1e-2, 1e-3])
  assert history[0]["critical_fraction"] == pytest.approx(0.5, abs=1e-3)
  assert "summary.json" in result.stdout


def test_cli_errors_reach_the_user(tmp_path):
  result = _run_main(
      "--config=experiments/configs/mnist_lenet.py",
      f"--workdir={tmp_path}",
      "--config.method=coteaching",
  )
  assert result.returncode != 0
  assert "error: Unknown method 'coteaching'" in result.stderr
  result = _run_main(
      "--config=experiments/configs/mnist_lenet.py",
      f"--workdir={tmp_path}",
      "--config.data_source=idx",
      f"--config.data_dir={tmp_path}/missing",
  )
  assert result.returncode != 0
  assert "error: no train-images-idx3-ubyte" in result.stderr
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
  assert "[2/2] mnist_lenet symmetric 0.2 cdr_ref 0" in first.stdout
  assert "lr x0.1 at epochs [1]" in first.stdout
  table = (results / "results.md").read_text()
  assert "| method | sym 20 |" in table and "| cdr_ref | " in table
  for name in ("test_accuracy.png", "memorization.png", "summaries.json"):
    assert (results / name).stat().st_size > 0
  # Finished runs are skipped; another budget in the same place is refused.
  second = subprocess.run(
      command, cwd=REPO, capture_output=True, text=True, timeout=300
  )
  assert second.returncode == 0 and "[1/2]" not in second.stdout
  third = subprocess.run(
      command[:-3] + ["--num_epochs=3", *command[-2:]],
      cwd=REPO, capture_output=True, text=True, timeout=300,
  )
  assert third.returncode != 0 and "another configuration" in third.stderr


# ---------------------------------------------------------------------------
# Data parallelism
# ---------------------------------------------------------------------------


def _steps_on(num_devices, config, dataset, num_steps):
  """Params after `num_steps` steps, and test predictions, on a mesh."""
  mesh = train.make_mesh(num_devices)
  data = train.load_data(config, dataset)
  method = methods.get_method(config.method)
  steps_per_epoch = len(data.train_labels) // config.batch_size
  tx = method.optimizer(config, train.learning_rate_schedule(config, steps_per_epoch))
  graphdef, state = train.create_train_state(
      config, data.train_images.shape[1:], 10, tx
  )
  state = jax.device_put(state, train._replicated(mesh))
  split = train.to_device(data.train_images, data.train_labels, 16, mesh)
  test = train.to_device(data.test_images, data.test_labels, 16, mesh)
  perm = jax.device_put(
      train.epoch_permutation(0, 1, split.size), train._replicated(mesh)
  )
  train_fn = train.make_train_fn(
      graphdef, method, tx, config, mesh, steps_per_epoch, 1
  )
  totals = train.zero_totals(method, state.opt_state)
  for _ in range(num_steps):
    state, totals = train_fn(state, totals, split.images, split.labels, perm)
  config.eval_batch_size = 16
  preds = train.predict_split(
      train.make_predict_fn(graphdef, config, mesh), state, test, 16
  )
  return jax.device_get(state), preds


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
