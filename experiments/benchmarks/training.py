"""Measures what CDR costs per training step, and how long an epoch takes.

For each model it times the full jitted training step of `train.py` (batch
gather on device, forward, backward, optimizer, metrics) with three
optimizers on the same synthetic data:

* `ce`: chain(add_decayed_weights, sgd) - the baseline;
* `cdr_ref`: chain(cdr(tau, 0), add_decayed_weights, sgd) - the reference
  code's CDR (the ratio isolates the cost of CDR itself);
* `cdr_paper`: chain(cdr(tau, lam, "l1"), sgd).

Methods are measured in interleaved rounds (ce, cdr_ref, cdr_paper, ce, ...)
so that a busy machine slows them alike; the report gives the median time
per step and the median over rounds of each CDR step's time over the CE
step's time in the same round. Both execution modes of the training
loop are timed for the small models: one jitted call per step, and
`--scan_steps` steps per call in a `lax.scan`.

Finally it runs two real epochs of LeNet-5 on Fashion-MNIST (54,000 training
images, batch 32, evaluation of train/val/test included) through
`train.train_and_evaluate` and reports the second (compiled) epoch's time.

  python -m experiments.benchmarks.training
  python -m experiments.benchmarks.training --models=lenet5 --rounds=3
"""

import json
import os
import statistics
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from experiments import atomic
from experiments import data
from experiments import distributed
from experiments import steps
from experiments import train
from experiments.configs import default

_MODELS = flags.DEFINE_list(
    "models", ["lenet5", "mlp", "resnet18"], "Models to time."
)
_ROUNDS = flags.DEFINE_integer("rounds", 7, "Interleaved rounds per setting.")
_SCAN_STEPS = flags.DEFINE_integer(
    "scan_steps", 100, "Steps per lax.scan call in the scan mode."
)
_EPOCH = flags.DEFINE_bool(
    "epoch", True, "Also time full LeNet-5 epochs on Fashion-MNIST."
)
_OUTPUT = flags.DEFINE_string(
    "output",
    "experiments/results/benchmark.json",
    "Where to write the measurements (JSON).",
)

_METHODS = ("ce", "cdr_ref", "cdr_paper")
# model -> (dataset whose preprocessing is used, image shape, batch size,
#           steps per timed measurement in per-step mode, scan mode timed).
_SETTINGS = {
    "lenet5": ("fashion_mnist", (28, 28, 1), 32, 200, True),
    "mlp": ("fashion_mnist", (28, 28, 1), 32, 200, True),
    "resnet18": ("cifar10", (32, 32, 3), 128, 2, False),
}


def _config(model: str, method: str, dataset: str, batch_size: int):
  config = default.get_config()
  config.model = model
  config.method = method
  config.dataset = dataset
  config.batch_size = batch_size
  config.noise_rate = 0.4  # CDR's tau: 40% of the kernels are non-critical.
  return config


def _step_timer(model, method, steps_per_call, num_calls, mesh,
                setting=None, dtype="float32"):
  """Returns a function that times `num_calls` calls, in seconds per step."""
  dataset, shape, batch_size, _, _ = setting or _SETTINGS[model]
  config = _config(model, method, dataset, batch_size)
  config.dtype = dtype
  num_examples = batch_size * steps_per_call * num_calls
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (num_examples, *shape), dtype=np.uint8)
  labels = rng.integers(0, 10, num_examples, dtype=np.int32)
  arrays = steps.TrainArrays(images, labels, np.ones(num_examples, bool))
  steps_per_epoch = num_examples // batch_size
  method, state = train.build_method(
      config,
      image_shape=shape,
      num_classes=10,
      num_train=num_examples,
      steps_per_epoch=steps_per_epoch,
      corruption_rate=config.noise_rate,
  )
  train_fn = steps.make_train_fn(
      method.train_step,
      data.get_spec(dataset),
      config,
      mesh,
      steps_per_epoch,
      steps_per_call,
  )
  perm = steps.epoch_permutation(0, 0, num_examples)
  totals = steps.zero_metrics(method.train_step, state.method, shape, config)
  carry = [jax.block_until_ready(state)]

  def measure() -> float:
    state = carry[0]
    start = time.perf_counter()
    for _ in range(num_calls):
      state, _ = train_fn(state, totals, arrays, perm)
    jax.block_until_ready(state)
    carry[0] = state
    return (time.perf_counter() - start) / (num_calls * steps_per_call)

  measure()  # Compile and warm up.
  return measure


def time_steps(model: str, steps_per_call: int, rounds: int, mesh,
               setting=None, dtype="float32"):
  """Median seconds per step of each method, measured in interleaved rounds.

  `setting` (a `_SETTINGS` row) and `dtype` (the model's compute dtype)
  override the model's defaults (experiments/benchmarks/suite.py).
  """
  steps = (setting or _SETTINGS[model])[3]
  num_calls = max(1, steps // steps_per_call)
  timers = {
      m: _step_timer(model, m, steps_per_call, num_calls, mesh, setting,
                     dtype)
      for m in _METHODS
  }
  samples = {m: [] for m in _METHODS}
  for _ in range(rounds):
    for m in _METHODS:
      samples[m].append(timers[m]())
  return {m: statistics.median(s) for m, s in samples.items()}, samples


def time_epochs(mesh_devices: int | None) -> dict[str, dict[str, float]]:
  """Seconds of a real LeNet-5 Fashion-MNIST epoch (2nd of 2), per method."""
  result = {}
  for method in ("ce", "cdr_ref"):
    config = _config("lenet5", method, "fashion_mnist", 32)
    config.num_epochs = 2
    config.log_progress = False
    config.num_devices = mesh_devices
    with tempfile.TemporaryDirectory() as workdir:
      train.train_and_evaluate(config, workdir)
      with open(os.path.join(workdir, "metrics.jsonl")) as f:
        last = [json.loads(line) for line in f][-1]
    result[method] = {
        "epoch_s": last["epoch_time_s"],
        "train_s": last["train_time_s"],
        "eval_s": last["epoch_time_s"] - last["train_time_s"],
    }
  return result


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint.
  mesh = distributed.make_mesh(None)
  report = {
      "devices": [str(d) for d in mesh.devices.flat],
      "rounds": _ROUNDS.value,
      "steps": {},
  }
  for model in _MODELS.value:
    if model not in _SETTINGS:
      raise app.UsageError(f"--models: unknown {model!r}; use {list(_SETTINGS)}")
    _, _, batch_size, _, scan = _SETTINGS[model]
    modes = {"per_step": 1}
    if scan:
      modes[f"scan{_SCAN_STEPS.value}"] = _SCAN_STEPS.value
    for mode, steps_per_call in modes.items():
      medians, samples = time_steps(model, steps_per_call, _ROUNDS.value, mesh)
      key = f"{model}_b{batch_size}_{mode}"
      report["steps"][key] = {
          "median_ms": {m: 1e3 * t for m, t in medians.items()},
          "images_per_s": {m: batch_size / t for m, t in medians.items()},
          # Median over rounds of the ratio within a round: the methods of a
          # round ran back to back, under the same load.
          "ratio_vs_ce": {
              m: statistics.median(
                  t / ce for t, ce in zip(samples[m], samples["ce"])
              )
              for m in _METHODS
              if m != "ce"
          },
          "samples_ms": {m: [1e3 * t for t in s] for m, s in samples.items()},
      }
      print(
          f"{key:28s} "
          + "  ".join(
              f"{m} {1e3 * medians[m]:7.2f} ms ({batch_size / medians[m]:6.0f} img/s)"
              for m in _METHODS
          )
          + "  ratios: "
          + ", ".join(
              f"{m}/ce {r:.3f}" for m, r in report["steps"][key]["ratio_vs_ce"].items()
          ),
          flush=True,
      )
  if _EPOCH.value:
    report["lenet5_epoch"] = time_epochs(None)
    for method, t in report["lenet5_epoch"].items():
      print(
          f"LeNet-5 F-MNIST epoch ({method}, 54,000 images, batch 32): "
          f"{t['epoch_s']:.1f} s = {t['train_s']:.1f} s training + "
          f"{t['eval_s']:.1f} s evaluation (train/val/test)",
          flush=True,
      )
  os.makedirs(os.path.dirname(_OUTPUT.value) or ".", exist_ok=True)
  atomic.write_json(_OUTPUT.value, report)
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
