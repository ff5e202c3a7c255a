"""What a second process costs: 2 processes x 1 device against 1 process x 2.

Runs the same Fashion-MNIST MLP `cdr_ref` run (the Debian IDX files, a
class-balanced subset) as one process holding 2 fake CPU devices and as two
`jax.distributed` processes of 1 device each (localhost coordinator, gloo),
in interleaved rounds, and compares the training images/s of the epochs
after the first (which compiles). The two-process runs dump their
optimized HLO, and the benchmark checks that the compiled training step
of `cdr_ref` holds no all-gather: parameters and CDR's scores stay
replicated, the gradient all-reduce is the only collective the step needs.

  python -m experiments.benchmarks.multiprocess
  python -m experiments.benchmarks.multiprocess --rounds=3 --epochs=3
"""

import glob
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

from experiments import atomic

_ROUNDS = flags.DEFINE_integer("rounds", 2, "Interleaved rounds.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Epochs per run (the first compiles).")
_EXAMPLES = flags.DEFINE_integer("num_train_examples", 8000, "Training subset.")
_OUT = flags.DEFINE_string(
    "out", "experiments/results/benchmark_multiprocess.md", "Report path.")

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _command(workdir, extra=()):
  fields = dict(
      dataset="fashion_mnist", data_source="idx", model="mlp",
      num_train_examples=_EXAMPLES.value, num_epochs=_EPOCHS.value,
      lr_milestones="(10,)", noise_type="symmetric", noise_rate=0.4,
      method="cdr_ref", batch_size=32, eval_batch_size=1000,
      steps_per_call=100, log_progress=False,
  )
  return [sys.executable, "-m", "experiments.main",
          "--config=experiments/configs/default.py", f"--workdir={workdir}",
          *(f"--config.{k}={v}" for k, v in fields.items()), *extra]


def _env(devices, dump=None):
  flags_ = f"--xla_force_host_platform_device_count={devices}"
  if dump:
    flags_ += f" --xla_dump_to={dump} --xla_dump_hlo_pass_re=^$"
  return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags_)


def _images_per_s(workdir) -> float:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return statistics.median(r["images_per_s"] for r in records[1:])


def _one_process(workdir) -> float:
  subprocess.run(_command(workdir), cwd=_REPO, env=_env(2), check=True,
                 capture_output=True)
  return _images_per_s(workdir)


def _two_processes(workdir, dump) -> float:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  processes = [
      subprocess.Popen(
          _command(workdir, (f"--coordinator_address=127.0.0.1:{port}",
                             "--num_processes=2", f"--process_id={i}")),
          cwd=_REPO, env=_env(1, f"{dump}/p{i}"), stdout=subprocess.DEVNULL,
          stderr=subprocess.DEVNULL)
      for i in range(2)
  ]
  for p in processes:
    if p.wait() != 0:
      raise RuntimeError(f"a process failed ({p.returncode}): rerun it alone")
  return _images_per_s(workdir)


def _collectives(dump) -> dict[str, int]:
  """Collective ops of the optimized training step (the largest module of
  the jitted lambda that steps.make_train_fn compiles)."""
  modules = glob.glob(f"{dump}/p0/*jit__lambda*after_optimizations.txt")
  text = open(max(modules, key=os.path.getsize)).read()
  return {op: len(re.findall(rf"\b{op}(-start)?\(", text))
          for op in ("all-reduce", "all-gather", "reduce-scatter",
                     "all-to-all", "collective-permute")}


def main(argv):
  del argv
  one, two = [], []
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(_ROUNDS.value):
      one.append(_one_process(f"{tmp}/one{r}"))
      two.append(_two_processes(f"{tmp}/two{r}", f"{tmp}/hlo{r}"))
      print(f"round {r}: 1x2 {one[-1]:.0f} img/s, 2x1 {two[-1]:.0f} img/s",
            flush=True)
    collectives = _collectives(f"{tmp}/hlo0")
  ratios = [b / a for a, b in zip(one, two)]
  lines = [
      "# 2 processes x 1 device vs 1 process x 2 devices (CPU, gloo)",
      "",
      f"`python -m experiments.benchmarks.multiprocess --rounds={_ROUNDS.value}"
      f" --epochs={_EPOCHS.value} --num_train_examples={_EXAMPLES.value}`:"
      " Fashion-MNIST MLP 784-1024-1024-10, `cdr_ref`, batch 32, 100 steps"
      " per call; training images/s, median of the epochs after the first.",
      "",
      "| round | 1 process x 2 devices | 2 processes x 1 device | ratio |",
      "|---|---|---|---|",
      *(f"| {r} | {a:.0f} | {b:.0f} | {b / a:.2f}x |"
        for r, (a, b) in enumerate(zip(one, two))),
      "",
      f"Median ratio: {statistics.median(ratios):.2f}x (goal: at least 0.8x).",
      "",
      "Collectives in the two-process compiled training step: "
      + ", ".join(f"{k} {v}" for k, v in collectives.items()) + ".",
      "",
  ]
  atomic.write_atomic(_OUT.value, "\n".join(lines))
  print("\n".join(lines))
  print(f"Wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
