"""The grain input path against the device path, and its host memory.

(a) Training images/s of LeNet-5 and the MLP on Fashion-MNIST (the Debian
IDX files, `data_source=idx`, a `--num_train_examples` subset so that an
epoch takes seconds) through the real loop (`train.setup` +
`train.train_epoch`, each epoch's record gives `images_per_s` and
`input_wait`, the fraction of the epoch the loop waited for data), for the
device path and the grain path with 0 and 1 worker. Settings run in
interleaved rounds so that a busy machine slows them alike; in each round a
setting trains two epochs and the second is timed: the first pays the
compilation (round 1) and the worker start-up that a long run pays once
(the grain path starts the next epoch's workers during an epoch). The report
gives medians and the median over rounds of grain / device in the same
round; the target of issue 20 is >= 0.75x with one worker.

(c) Host memory of the grain path over an ANIMAL-10N-layout folder of 5k
and of 20k 64 x 64 JPEGs (written into a temporary folder): a fresh process
per size sets up a run (1 worker) and iterates one training epoch; its RSS
(and its worker's) is read from /proc. RSS should grow with the per-example
arrays (paths, labels), not with the images.

  python -m experiments.benchmarks.input_pipeline
  python -m experiments.benchmarks.input_pipeline --rounds=2 --sizes=1000,4000
"""

import multiprocessing
import os
import statistics
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image
import psutil

from experiments import atomic
from experiments import data
from experiments import train
from experiments.configs import fashion_mnist_lenet
from experiments.configs import fashion_mnist_mlp

_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved rounds of (a).")
_NUM_TRAIN = flags.DEFINE_integer(
    "num_train_examples", 30000, "F-MNIST subset of (a) (before the 10% val)."
)
_MODELS = flags.DEFINE_list("models", ["lenet5", "mlp"], "Models of (a).")
_SIZES = flags.DEFINE_list("sizes", ["5000", "20000"], "Folder sizes of (c).")
_OUTPUT = flags.DEFINE_string(
    "output", "experiments/results/benchmark_input_pipeline.md",
    "Where to write the Markdown report.",
)

_CONFIGS = {"lenet5": fashion_mnist_lenet, "mlp": fashion_mnist_mlp}
# (input path, workers) of (a); the first is every ratio's denominator.
PATHS = (("device", 0), ("grain", 0), ("grain", 1))
_SIDE = 64  # ANIMAL-10N's images are 64 x 64.


def fmnist_config(model: str, path: str, workers: int, num_train: int):
  config = _CONFIGS[model].get_config()
  config.data_source, config.num_train_examples = "idx", num_train
  config.method, config.log_progress = "ce", False
  config.input_pipeline, config.num_workers = path, workers
  return config


class Setting:
  """One (model, path, workers) run, trained two epochs per `measure`."""

  def __init__(self, config, dataset):
    self._exp, self._state = train.setup(config, dataset)
    self._epoch = 0

  def measure(self) -> dict[str, float]:
    """Two epochs; the second's images/s and input wait."""
    for _ in range(2):
      self._epoch += 1
      self._state, record = train.train_epoch(self._exp, self._state,
                                              self._epoch)
    close = getattr(self._exp.feed, "close", None)
    if close is not None:  # No workers of this setting run in the next one's.
      close()
    return {"images_per_s": record["images_per_s"],
            "input_wait": record["input_wait"]}


def measure_training(models, rounds: int, num_train: int):
  """{model: {(path, workers): [round measurements]}}, interleaved."""
  dataset = data.load_dataset("fashion_mnist", source="idx")
  settings = {(m, p, w): Setting(fmnist_config(m, p, w, num_train), dataset)
              for m in models for p, w in PATHS}
  samples = {key: [] for key in settings}
  for r in range(rounds):
    for key, setting in settings.items():
      samples[key].append(setting.measure())
      print(f"round {r + 1}: {key}: "
            f"{samples[key][-1]['images_per_s']:,.0f} images/s, input wait "
            f"{samples[key][-1]['input_wait']:.0%}", flush=True)
  return {m: {(p, w): samples[(m, p, w)] for p, w in PATHS} for m in models}


def training_table(results) -> list[str]:
  lines = ["| model | input path | workers | images/s (median) | over the "
           "device path (median of rounds) | input wait (median) |",
           "| --- | --- | ---: | ---: | ---: | ---: |"]
  for model, rows in results.items():
    device = [s["images_per_s"] for s in rows[PATHS[0]]]
    for (path, workers), samples in rows.items():
      rates = [s["images_per_s"] for s in samples]
      ratio = statistics.median(r / d for r, d in zip(rates, device))
      wait = statistics.median(s["input_wait"] for s in samples)
      lines.append(f"| {model} | {path} | {workers} | "
                   f"{statistics.median(rates):,.0f} | {ratio:.2f}x | "
                   f"{wait:.1%} |")
  return lines


def write_animal10n(root: str, num_train: int, num_test: int = 200) -> int:
  """An ANIMAL-10N layout of distinct-looking 64 x 64 JPEGs; total bytes."""
  rng = np.random.default_rng(0)
  blobs = []
  for _ in range(64):  # 64 distinct files, cycled: writing stays fast.
    coarse = rng.integers(0, 256, (8, 8, 3), np.uint8)
    image = Image.fromarray(coarse).resize((_SIDE, _SIDE),
                                           Image.Resampling.BICUBIC)
    path = os.path.join(root, "blob.jpg")
    image.save(path, quality=90)
    with open(path, "rb") as f:
      blobs.append(f.read())
  os.remove(path)
  total = 0
  for split, count in (("training", num_train), ("testing", num_test)):
    os.makedirs(os.path.join(root, split))
    for i in range(count):
      blob = blobs[i % len(blobs)]
      with open(os.path.join(root, split, f"{i % 10}_{i:06d}.jpg"), "wb") as f:
        f.write(blob)
      total += len(blob)
  return total


def _rss(pid: int | str = "self") -> dict[str, int]:
  """VmRSS and VmHWM (peak) of a process, in bytes."""
  with open(f"/proc/{pid}/status") as f:
    fields = dict(line.split(":", 1) for line in f)
  return {k: 1024 * int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM")}


def _memory_child(root: str, queue) -> None:
  """In a fresh process: RSS before setup, after it, after one epoch."""
  from experiments.configs import default  # pylint: disable=g-import-not-at-top

  config = default.get_config()
  config.update(dataset="animal10n", data_dir=root, noise_type="real",
                input_pipeline="grain", num_workers=1, model="mlp",
                mlp_hidden=(16,), image_size=32, batch_size=100,
                eval_batch_size=100, method="ce", log_progress=False)
  before = _rss()["VmRSS"]
  exp, state = train.setup(config)
  after_setup = _rss()["VmRSS"]
  store = exp.feed._stores["train"]  # pylint: disable=protected-access
  per_example = sum(a.nbytes for a in store)
  del state  # The data path alone: every batch of the epoch, to the device.
  for _ in exp.feed.epoch_calls(exp.plans[0], 1):
    pass
  workers = [_rss(c.pid)["VmRSS"] for c in psutil.Process().children(True)
             if c.is_running()]
  end = _rss()
  exp.feed.close()
  queue.put({"num_train": len(store.labels), "before": before,
             "after_setup": after_setup, "after_epoch": end["VmRSS"],
             "peak": end["VmHWM"], "workers": sum(workers),
             "per_example_arrays": per_example})


def measure_memory(sizes) -> list[dict[str, int]]:
  context = multiprocessing.get_context("spawn")
  rows = []
  for size in sizes:
    with tempfile.TemporaryDirectory() as root:
      jpeg_bytes = write_animal10n(root, size)
      queue = context.Queue()
      child = context.Process(target=_memory_child, args=(root, queue))
      child.start()
      row = queue.get()
      child.join()
      row["jpeg_bytes"] = jpeg_bytes
      rows.append(row)
      print(f"{size} images: {row}", flush=True)
  return rows


def memory_table(rows) -> list[str]:
  mib = lambda b: f"{b / 2**20:.1f}"
  lines = ["| training images | RSS before setup (MiB) | after setup | after "
           "one epoch | peak | worker RSS | per-example arrays | decoded "
           f"{_SIDE} x {_SIDE} images | JPEG files |",
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for row in rows:
    lines.append(
        f"| {row['num_train']:,} | {mib(row['before'])} | "
        f"{mib(row['after_setup'])} | {mib(row['after_epoch'])} | "
        f"{mib(row['peak'])} | {mib(row['workers'])} | "
        f"{mib(row['per_example_arrays'])} | "
        f"{mib(row['num_train'] * _SIDE * _SIDE * 3)} | "
        f"{mib(row['jpeg_bytes'])} |")
  if len(rows) >= 2:
    a, b = rows[0], rows[-1]
    grow = lambda k: mib(b[k] - a[k])
    lines += ["", f"From {a['num_train']:,} to {b['num_train']:,} images: "
              f"RSS after the epoch grows {grow('after_epoch')} MiB, the "
              f"worker's {grow('workers')} MiB; the per-example arrays grow "
              f"{grow('per_example_arrays')} MiB, the decoded images would "
              f"grow {mib((b['num_train'] - a['num_train']) * _SIDE**2 * 3)}"
              f" MiB and the JPEG files {grow('jpeg_bytes')} MiB."]
  return lines


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  start = time.perf_counter()
  training = measure_training(_MODELS.value, _ROUNDS.value, _NUM_TRAIN.value)
  memory = measure_memory([int(s) for s in _SIZES.value])
  lines = [
      "# The grain input path (`python -m experiments.benchmarks."
      "input_pipeline`)", "",
      f"{os.cpu_count()} cores (shared with other jobs). (a) Fashion-MNIST "
      f"(IDX files), {_NUM_TRAIN.value:,} examples before the 10% "
      f"validation split, batch 32, 100 steps per call, method `ce`; "
      f"{_ROUNDS.value} interleaved rounds, in each the second of two "
      "epochs is timed.", "", *training_table(training), "",
      "(c) Host memory, grain path with 1 worker, one training epoch over "
      "an ANIMAL-10N-layout folder (64 x 64 JPEGs, 32 px crops, MLP).", "",
      *memory_table(memory), "",
      f"Whole benchmark: {time.perf_counter() - start:.0f} s.", ""]
  report = "\n".join(lines)
  atomic.write_atomic(_OUTPUT.value, report)
  print(report)
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
