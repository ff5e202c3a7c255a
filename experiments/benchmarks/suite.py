"""Every benchmark that matters, on whatever backend JAX finds.

One Markdown file per backend (`DIR/<backend>.md`, e.g. `cpu.md`, `gpu.md`,
`tpu.md`) with three tables, each from the benchmark module that owns the
measurement:

* selection (`selection.benchmark_size`): the k-th largest of m scores
  (k = 0.8 m) by radix, bisection and the automatic choice against
  `lax.top_k` and one `jnp.sum` (the read floor), m = 1e6 ... 1e8 as far as
  the device's memory allows;
* the training step (`training.time_steps`): CE vs `cdr_ref` vs `cdr_paper`
  for the MLP, ResNet-18 and `resnet50_imagenet`, bfloat16 compute on
  accelerators, interleaved rounds;
* the grain pipeline (`input_pipeline.batches`): decode + random-resized-crop
  224 + flip of Clothing1M-like JPEGs (as `decode.write_jpegs` writes them), images/s with
  0 workers and with one per core.

Sizes: the full run is sized for one GPU in under 8 minutes; `--quick`
(smaller sizes, fewer rounds, no ResNet-50) for this 2-core CPU in
under 2 minutes; `--smoke` (the least of each) for the tests.

  python -m experiments.benchmarks.suite --out DIR [--quick | --smoke]
"""

import argparse
import os
import statistics
import tempfile
import time
from typing import NamedTuple

import jax
import numpy as np
from PIL import Image
import psutil

from experiments import atomic
from experiments import distributed
from experiments.benchmarks import selection
from experiments.benchmarks import training
from experiments.data import input_pipeline

_METHODS = ("ce", "cdr_ref", "cdr_paper")
# A selection at m scores holds about this many float32 copies of them
# (scores, the two normals, top_k's output and temporaries).
_SELECTION_COPIES = 12


class Size(NamedTuple):
  """How much each table measures."""

  sizes: tuple[int, ...]  # selection m
  repeats: int  # selection repeats
  rounds: int  # training-step rounds
  # model -> a training._SETTINGS row: (dataset, image shape, batch size,
  # steps per measurement, unused).
  models: dict
  images: int  # JPEGs through the pipeline
  workers: tuple[int, ...]


_FULL = Size(
    (10**6, 10**7, 10**8), 5, 5,
    {"mlp": ("fashion_mnist", (28, 28, 1), 32, 200, False),
     "resnet18": ("cifar10", (32, 32, 3), 128, 20, False),
     "resnet50_imagenet": ("food101", (224, 224, 3), 64, 10, False)},
    400, (0, os.cpu_count() or 1))
_QUICK = Size(
    (10**6,), 3, 3,
    {"mlp": ("fashion_mnist", (28, 28, 1), 32, 50, False),
     # ResNet-50's three compilations alone take minutes on 2 busy cores:
     # it is timed by the full run only.
     "resnet18": ("cifar10", (32, 32, 3), 8, 1, False)},
    64, (0,))
_SMOKE = Size(
    (10**5,), 1, 1,
    {"mlp": ("fashion_mnist", (28, 28, 1), 32, 5, False)},
    24, (0,))


def _memory_bytes() -> int:
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("bytes_limit") or psutil.virtual_memory().available


def selection_table(size: Size) -> list[str]:
  lines = ["| m | ours (auto) | radix | bisection | lax.top_k | jnp.sum | "
           "top_k / ours | ours / sum |", "|---|---|---|---|---|---|---|---|"]
  fmt = selection._fmt_ms  # pylint: disable=protected-access
  for m in size.sizes:
    if _SELECTION_COPIES * 4 * m > _memory_bytes():
      lines.append(f"| {m:.0e} | skipped: needs ~{_SELECTION_COPIES * 4 * m / 2**30:.1f} GiB |")
      continue
    times, _, _ = selection.benchmark_size(m, size.repeats, slow_s=5.0,
                                           with_baselines=False)
    top_k = _top_k_seconds(m, size.repeats)
    ours = times["kth_largest[auto]"]
    lines.append(
        f"| {m:.0e} | {fmt(ours)} | {fmt(times['kth_largest[radix]'])} | "
        f"{fmt(times['kth_largest[bisection]'])} | {fmt(top_k)} | "
        f"{fmt(times['jnp.sum'])} | {top_k / ours:.1f}x | "
        f"{ours / times['jnp.sum']:.1f}x |")
    print(lines[-1], flush=True)
  return lines


def _top_k_seconds(m: int, repeats: int) -> float:
  # selection.py's baselines include sort and torch; the suite wants top_k.
  key = jax.random.key(m)
  g, w = jax.random.normal(key, (2, m), jax.numpy.float32)
  scores = abs(g * w)
  k = int(selection.KEEP * m)
  fn = jax.jit(lambda s: jax.lax.top_k(s, k)[0][-1])
  times = selection._median_times(  # pylint: disable=protected-access
      {"top_k": fn}, {"top_k": (scores,)}, repeats, slow_s=5.0)
  return times["top_k"]


def training_table(size: Size, dtype: str) -> list[str]:
  mesh = distributed.make_mesh(None)
  lines = ["| model | image | batch | ce | cdr_ref | cdr_paper | cdr_ref / ce "
           "| cdr_paper / ce |", "|---|---|---|---|---|---|---|---|"]
  for model, setting in size.models.items():
    medians, samples = training.time_steps(model, 1, size.rounds, mesh,
                                           setting, dtype)
    ratio = lambda m: statistics.median(
        t / ce for t, ce in zip(samples[m], samples["ce"]))
    batch = setting[2]
    cells = " | ".join(f"{1e3 * medians[m]:.3g} ms ({batch / medians[m]:,.0f}"
                       " img/s)" for m in _METHODS)
    lines.append(f"| {model} | {setting[1][0]} px | {batch} | {cells} | "
                 f"{ratio('cdr_ref'):.2f}x | {ratio('cdr_paper'):.2f}x |")
    print(lines[-1], flush=True)
  return lines


def _write_jpegs(directory: str, count: int) -> list[str]:
  # decode.write_jpegs's images without its grain; decode.py's absl flags
  # clash with training.py's, so it cannot be imported beside it.
  rng = np.random.default_rng(0)
  paths = []
  for i in range(count):
    coarse = rng.integers(0, 256, (12, 16, 3), np.uint8)
    path = os.path.join(directory, f"{i:05d}.jpg")
    Image.fromarray(coarse).resize((500, 375), Image.Resampling.BICUBIC).save(
        path, quality=90)
    paths.append(path)
  return paths


def pipeline_table(size: Size) -> list[str]:
  lines = ["| workers | images/s (whole epoch) | first batch |",
           "|---|---|---|"]
  with tempfile.TemporaryDirectory() as directory:
    paths = _write_jpegs(directory, size.images)
    store = input_pipeline.SplitStore(
        np.asarray(paths), np.zeros(len(paths), np.int32),
        np.ones(len(paths), np.int8))
    prep = input_pipeline.Preprocessing("random_resized_crop", True, 224,
                                        None, seed=0)
    batch = 16 if size.images >= 64 else 8
    order = np.arange(len(paths) // batch * batch)
    for workers in size.workers:
      # grain prefetches with threads from the first `next`, so the epoch
      # is timed whole; the first batch's wait shows the worker start-up.
      start = time.perf_counter()
      iterator = iter(input_pipeline.batches(store, order, batch, prep,
                                             num_workers=workers))
      count = len(next(iterator)["labels"])
      first = time.perf_counter() - start
      for b in iterator:
        count += len(b["labels"])
      rate = count / (time.perf_counter() - start)
      lines.append(f"| {workers} | {rate:,.0f} | {first:.2f} s |")
      print(lines[-1], flush=True)
  return lines


def run(out: str, size: Size) -> str:
  """Runs the tables; writes and returns DIR/<backend>.md."""
  backend = jax.default_backend()
  device = jax.devices()[0]
  dtype = "float32" if backend == "cpu" else "bfloat16"
  start = time.perf_counter()
  lines = [f"# Benchmarks on {backend}: {device.device_kind} x "
           f"{jax.device_count()}", "",
           f"jax {jax.__version__}, {os.cpu_count()} host cores "
           "(`python -m experiments.benchmarks.suite`).", "",
           "## Selection: the k-th largest of m scores (k = 0.8 m)", "",
           *selection_table(size), "",
           f"## Training step ({dtype} compute; medians of {size.rounds} "
           "interleaved rounds)", "", *training_table(size, dtype), "",
           "## Grain pipeline: decode + random-resized-crop 224 + flip of "
           "500 x 375 JPEGs", "", *pipeline_table(size), ""]
  lines.append(f"Whole suite: {time.perf_counter() - start:.0f} s.")
  path = os.path.join(out, f"{backend}.md")
  os.makedirs(out, exist_ok=True)
  atomic.write_atomic(path, "\n".join(lines) + "\n")
  return path


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="folder for <backend>.md")
  group = parser.add_mutually_exclusive_group()
  group.add_argument("--quick", action="store_true",
                     help="small sizes: under 2 minutes on a 2-core CPU")
  group.add_argument("--smoke", action="store_true",
                     help="the least of each table (tests)")
  args = parser.parse_args(argv)
  size = _SMOKE if args.smoke else _QUICK if args.quick else _FULL
  path = run(args.out, size)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
