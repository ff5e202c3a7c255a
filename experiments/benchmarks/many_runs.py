"""Throughput of R runs in one program (jax.vmap over seeds) against one run.

For each model it times, on synthetic data and in interleaved rounds (so
that a busy machine slows them alike), the training images per second of:

* `single`: one run as `train.py` compiles it (no vmap), the baseline;
* `R=r`: r runs in one program as `many_runs.py` compiles them (`jax.vmap`
  of the step over the runs, each with its own initialization, labels and
  permutation), images summed over the runs;
* `one network at batch 32 r_max`: the same images per step through one
  network, a reference point: r_max runs do the same arithmetic, but with
  r_max sets of weights to read and update;
* for LeNet-5, `single, lax conv`: one run whose convolutions are
  `lax.conv_general_dilated` (a vmap over runs turns it into a grouped
  convolution, which XLA:CPU runs slowly) instead of
  `matmul_conv.conv_as_matmul`, one step per call (its faster mode), to show
  what a single run gave up for it.

Each is reported with its median ratio to `single` in the same round. Both
models run `--steps_per_call` steps per compiled call (a lax.scan), as
their configs do.

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
from experiments import distributed
from experiments import models
from experiments import steps
from experiments import train
from experiments.configs import default

_MODELS = flags.DEFINE_list("models", ["lenet5", "mlp"], "Models to time.")
_RUNS = flags.DEFINE_list("runs", ["1", "2", "4", "8"], "Runs per program.")
_METHOD = flags.DEFINE_string("method", "cdr_ref", "Method of every run.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved rounds.")
_STEPS = flags.DEFINE_integer("steps", 100, "Steps per timed measurement.")
_STEPS_PER_CALL = flags.DEFINE_integer(
    "steps_per_call", 100, "Steps per compiled call (lax.scan), as the configs."
)
_OUTPUT = flags.DEFINE_string(
    "output", "experiments/results/benchmark_many_runs.json",
    "Where to write the measurements (JSON).",
)


def _timer(model: str, num_runs: int, mesh, *, vmapped: bool = True,
           batch: int = 32, per_call: int | None = None, lenet_conv=None):
  """A function timing `_STEPS` steps of `num_runs` runs, in images/s."""
  if lenet_conv is not None:
    default_conv, models.LENET_CONV = models.LENET_CONV, lenet_conv
    try:
      return _timer(model, num_runs, mesh, vmapped=vmapped, batch=batch,
                    per_call=per_call)
    finally:
      models.LENET_CONV = default_conv
  config = default.get_config()
  config.model, config.method, config.noise_rate = model, _METHOD.value, 0.4
  config.batch_size = batch
  shape, num_steps = (28, 28, 1), _STEPS.value
  num_examples = batch * num_steps
  states, arrays, perms = [], [], []
  for seed in range(num_runs):
    config.seed = seed
    method, state = train.build_method(
        config, image_shape=shape, num_classes=10, num_train=num_examples,
        steps_per_epoch=num_steps, corruption_rate=config.noise_rate,
    )
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num_examples, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, num_examples, dtype=np.int32)
    states.append(state)
    arrays.append(steps.TrainArrays(images, labels, np.ones(num_examples, bool)))
    perms.append(steps.epoch_permutation(seed, 1, num_examples))
  per_call = min(per_call or _STEPS_PER_CALL.value, num_steps)
  train_steps = steps.make_train_steps(
      method.train_step, data.get_spec("fashion_mnist"), batch, mesh,
      num_steps, per_call,
  )
  totals = [steps.zero_metrics(method.train_step, s.method, shape, config)
            for s in states]
  keys = [steps.augment_key(s) for s in range(num_runs)]
  if vmapped:
    stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
    train_steps = jax.vmap(train_steps)
    args = [stack(states), stack(totals), stack(arrays), jnp.stack(perms),
            jnp.stack(keys)]
  else:
    args = [states[0], totals[0], arrays[0], perms[0], keys[0]]
  fn = jax.jit(train_steps, out_shardings=NamedSharding(mesh, P()))

  num_calls = num_steps // per_call

  def measure() -> float:
    start = time.perf_counter()
    for _ in range(num_calls):
      args[0], _ = fn(*args)
    jax.block_until_ready(args[0])
    images = num_runs * batch * num_calls * per_call
    return images / (time.perf_counter() - start)

  measure()  # Compile and warm up.
  return measure


def main(argv):
  del argv
  mesh = distributed.make_mesh(None)
  counts = [int(r) for r in _RUNS.value]
  report = {"device": str(jax.devices()[0]), "method": _METHOD.value,
            "steps": _STEPS.value, "steps_per_call": _STEPS_PER_CALL.value,
            "batch_per_run": 32, "models": {}}
  for model in _MODELS.value:
    timers = {"single": _timer(model, 1, mesh, vmapped=False)}
    timers.update({f"R={r}": _timer(model, r, mesh) for r in counts})
    timers[f"one network at batch {32 * max(counts)}"] = _timer(
        model, 1, mesh, vmapped=False, batch=32 * max(counts))
    if model == "lenet5":
      # One step per call: its faster mode (inside lax.scan XLA:CPU runs
      # these convolutions several times slower).
      timers["single, lax conv, 1 step per call"] = _timer(
          model, 1, mesh, vmapped=False, per_call=1,
          lenet_conv=jax.lax.conv_general_dilated)
    rounds = [{r: t() for r, t in timers.items()} for _ in range(_ROUNDS.value)]
    rows = {}
    for r in timers:
      rows[r] = {
          "images_per_s": statistics.median(x[r] for x in rounds),
          "ratio_to_single": statistics.median(x[r] / x["single"] for x in rounds),
      }
      print(
          f"{model}: {r}: {rows[r]['images_per_s']:,.0f} images/s, "
          f"{rows[r]['ratio_to_single']:.2f}x single",
          flush=True,
      )
    report["models"][model] = {"rounds": rounds, "median": rows}
  atomic.write_json(_OUTPUT.value, report)
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
