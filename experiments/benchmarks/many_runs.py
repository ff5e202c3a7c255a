"""Throughput of R runs in one program (jax.vmap over seeds) against one run.

For each model and R it times the jitted, vmapped training step of
`many_runs.py` (one step per call for LeNet, a 50-step lax.scan for the MLP,
as their configs run them) on synthetic data (each run with its own initialization,
labels and permutation), in interleaved rounds (R = 1, 2, 4, ..., then
again) so that a busy machine slows them alike, and reports training
images per second summed over the R runs and its ratio to R = 1 in the same
round (median over rounds).

  python -m experiments.benchmarks.many_runs
  python -m experiments.benchmarks.many_runs --models=lenet5 --runs=1,2,4,8
"""

import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from experiments import atomic
from experiments import data
from experiments import steps
from experiments import train
from experiments.configs import default

_MODELS = flags.DEFINE_list("models", ["lenet5", "mlp"], "Models to time.")
_RUNS = flags.DEFINE_list("runs", ["1", "2", "4", "8"], "Runs per program.")
_METHOD = flags.DEFINE_string("method", "cdr_ref", "Method of every run.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved rounds.")
_STEPS = flags.DEFINE_integer("steps", 50, "Steps per timed measurement.")
# Steps per compiled call, as the configs run them: XLA:CPU convolutions are
# slower inside lax.scan, dense layers faster (benchmarks/training.py).
_STEPS_PER_CALL = {"lenet5": 1, "mlp": 50}
_OUTPUT = flags.DEFINE_string(
    "output", "experiments/results/benchmark_many_runs.json",
    "Where to write the measurements (JSON).",
)


def _timer(model: str, num_runs: int, mesh):
  """A function timing one call of `_STEPS` steps of `num_runs` runs."""
  config = default.get_config()
  config.model, config.method, config.noise_rate = model, _METHOD.value, 0.4
  batch, shape = config.batch_size, (28, 28, 1)
  num_examples = batch * _STEPS.value
  states, arrays, perms = [], [], []
  for seed in range(num_runs):
    config.seed = seed
    method, state = train.build_method(
        config, image_shape=shape, num_classes=10, num_train=num_examples,
        steps_per_epoch=_STEPS.value,
    )
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num_examples, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, num_examples, dtype=np.int32)
    states.append(state)
    arrays.append(steps.TrainArrays(images, labels, np.ones(num_examples, bool)))
    perms.append(steps.epoch_permutation(seed, 1, num_examples))
  stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
  per_call = _STEPS_PER_CALL[model]
  train_steps = steps.make_train_steps(
      method.train_step, data.get_spec("fashion_mnist"), batch, mesh,
      _STEPS.value, per_call,
  )
  fn = jax.jit(jax.vmap(train_steps), out_shardings=NamedSharding(mesh, P()))
  totals = stack([
      steps.zero_metrics(method.train_step, s.method, shape, config)
      for s in states
  ])
  args = [stack(states), totals, stack(arrays), jnp.stack(perms),
          jnp.stack([steps.augment_key(s) for s in range(num_runs)])]

  def measure() -> float:
    start = time.perf_counter()
    for _ in range(_STEPS.value // per_call):
      args[0], _ = fn(*args)
    jax.block_until_ready(args[0])
    return num_runs * batch * _STEPS.value / (time.perf_counter() - start)

  measure()  # Compile and warm up.
  return measure


def main(argv):
  del argv
  mesh = train.make_mesh(None)
  counts = [int(r) for r in _RUNS.value]
  report = {"device": str(jax.devices()[0]), "method": _METHOD.value,
            "steps": _STEPS.value, "steps_per_call": _STEPS_PER_CALL,
            "models": {}}
  for model in _MODELS.value:
    timers = {r: _timer(model, r, mesh) for r in counts}
    rounds = [{r: timers[r]() for r in counts} for _ in range(_ROUNDS.value)]
    rows = {}
    for r in counts:
      rows[r] = {
          "images_per_s": statistics.median(x[r] for x in rounds),
          "ratio_to_one_run": statistics.median(x[r] / x[counts[0]] for x in rounds),
      }
      print(
          f"{model}: R={r}: {rows[r]['images_per_s']:,.0f} images/s, "
          f"{rows[r]['ratio_to_one_run']:.2f}x R={counts[0]}",
          flush=True,
      )
    report["models"][model] = {"rounds": rounds, "median": rows}
  atomic.write_json(_OUTPUT.value, report)
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
