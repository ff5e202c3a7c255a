"""Benchmark: the exact global threshold of CDR against sort-based selection.

Measures, in one process and interleaved, the time to find the k-th largest of
m non-negative float32 scores (k = 0.8 m) with `optax_cdr.kth_largest` (radix,
bisection and the automatic choice), `jax.lax.top_k`, `jnp.sort`, a plain
`jnp.sum` over the scores (one read pass: the floor), and `torch.topk` /
`torch.kthvalue` when torch is installed. It also times a full
`chain(cdr, sgd)` update against `chain(add_decayed_weights, sgd)`, the `cdr`
update alone against `add_decayed_weights` alone on the 784-1024-1024-10 MLP's
kernels (1.86M ranked weights), and reports the temporary memory XLA assigns to
each selection program and to the `cdr` update. Beside them it times one
histogram pass (`one pass`: the 32,768-bin histogram of the top bits that
the radix select builds first, walked in the same chunks), the floor of an
exact selection by histograms: two such passes are the least it needs.

    python -m experiments.benchmarks.selection               # 1e4 .. 1e8
    python -m experiments.benchmarks.selection --sizes 1e4,1e6 --repeats 5

Prints Markdown tables of medians and ratios; `--out` also writes them to a
file.
"""

import argparse
import functools
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_cdr

KEEP = 0.8  # k = 0.8 m, tau = 0.2
MLP_SHAPES = {"dense0": (784, 1024), "bias0": (1024,), "dense1": (1024, 1024),
              "bias1": (1024,), "head": (1024, 10), "bias2": (10,)}


def _time_once(fn, *args) -> float:
  # Let the previous method's thread pools (torch's OpenMP spins) go idle.
  time.sleep(0.02)
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def _median_times(fns: dict, args: dict, repeats: int, slow_s: float) -> dict:
  """Median seconds per function, runs interleaved; slow ones run once."""
  times = {name: [] for name in fns}
  for name, fn in fns.items():  # warm-up / compile, and detect slow ones
    _time_once(fn, *args[name])
    times[name].append(_time_once(fn, *args[name]))
  for _ in range(repeats - 1):
    for name, fn in fns.items():
      if times[name][0] < slow_s:
        times[name].append(_time_once(fn, *args[name]))
  return {name: statistics.median(t) for name, t in times.items()}


def _temp_bytes(fn, *args) -> int:
  analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
  return int(getattr(analysis, "temp_size_in_bytes", 0)) if analysis else 0


def _torch_fns(scores: np.ndarray, k: int):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return {}, {}
  t = torch.from_numpy(scores.copy())
  m = scores.size
  fns = {
      "torch.topk": lambda x: x.topk(k).values[-1].item(),
      # kthvalue is the k-th *smallest*: the k-th largest is the (m-k+1)-th.
      "torch.kthvalue": lambda x: x.kthvalue(m - k + 1).values.item(),
  }
  return fns, {name: (t,) for name in fns}


def _split_leaves(scores: jax.Array):
  """A model-like pytree: four kernels of different sizes and a bias."""
  m = scores.size
  cuts = [m // 2, m // 2 + m // 4, m // 2 + m // 4 + m // 8, m - 64]
  parts = jnp.split(scores, cuts)
  return {f"kernel{i}": p.reshape(-1, 1) if i < 4 else p
          for i, p in enumerate(parts)}


def _one_pass(sources):
  """One histogram pass of the radix select over `Source`s: its floor / 2."""
  # pylint: disable=protected-access
  return optax_cdr._selection._range_histogram(
      sources, jnp.uint32(0), jnp.uint32(16), 15, chunked=True)


def _cdr_update_temp_bytes(grads, params) -> int:
  tx = optax_cdr.cdr(1 - KEEP, 1e-3)
  return _temp_bytes(tx.update, grads, tx.init(params), params)


def benchmark_size(m: int, repeats: int, slow_s: float, with_baselines: bool):
  key = jax.random.key(m)
  # Products of normals, like |g * w|: heavy-tailed, few exact ties.
  g, w = jax.random.normal(key, (2, m), jnp.float32)
  scores = jnp.abs(g * w)
  k = int(KEEP * m)
  ours = {
      f"kth_largest[{method}]": jax.jit(
          functools.partial(optax_cdr.kth_largest, k=k, method=method))
      for method in ("auto", "radix", "bisection")
  }
  one_pass = lambda s: _one_pass([optax_cdr._selection.Source((s,), jnp.abs)])
  fns = {**ours, "jnp.sum": jax.jit(jnp.sum), "one pass": jax.jit(one_pass)}
  if with_baselines:
    fns["lax.top_k"] = jax.jit(lambda s: jax.lax.top_k(s, k)[0][-1])
    fns["jnp.sort"] = jax.jit(lambda s: jnp.sort(s)[m - k])
  args = {name: ([scores] if name.startswith("kth") else (scores,))
          for name in fns}
  torch_fns, torch_args = ({}, {})
  if with_baselines:
    torch_fns, torch_args = _torch_fns(np.asarray(scores), k)
  fns.update(torch_fns)
  args.update(torch_args)
  times = _median_times(fns, args, repeats, slow_s)

  # Exactness check of the numbers being compared.
  want = float(np.partition(np.asarray(scores), m - k)[m - k])
  for name in ours:
    got = float(ours[name]([scores]).value)
    if got != want:
      raise AssertionError(f"{name} gave {got}, expected {want} at m={m}")

  memory = {
      "ours": _temp_bytes(lambda s: optax_cdr.kth_largest([s], k).value, scores),
      "lax.top_k": _temp_bytes(lambda s: jax.lax.top_k(s, k)[0][-1], scores),
      "jnp.sort": _temp_bytes(lambda s: jnp.sort(s)[m - k], scores),
  }

  params = _split_leaves(w)
  grads = _split_leaves(g)
  memory["cdr update"] = _cdr_update_temp_bytes(grads, params)
  cdr_tx = optax.chain(optax_cdr.cdr(1 - KEEP, 1e-3), optax.sgd(0.01, 0.9))
  sgd_tx = optax.chain(optax.add_decayed_weights(1e-3), optax.sgd(0.01, 0.9))
  steps = {
      "chain(cdr, sgd)": (jax.jit(cdr_tx.update),
                          (grads, cdr_tx.init(params), params)),
      "chain(wd, sgd)": (jax.jit(sgd_tx.update),
                         (grads, sgd_tx.init(params), params)),
  }
  step_times = _median_times({n: f for n, (f, _) in steps.items()},
                              {n: a for n, (_, a) in steps.items()},
                              repeats, slow_s)
  return times, memory, step_times


def benchmark_mlp_update(repeats: int):
  """`cdr` alone against `add_decayed_weights` alone, MLP-shaped pytree."""
  key = jax.random.key(0)
  leaf = lambda i, shape, scale: scale * jax.random.normal(
      jax.random.fold_in(key, i), shape, jnp.float32)
  params = {n: leaf(i, s, 0.05) for i, (n, s) in enumerate(MLP_SHAPES.items())}
  grads = {n: leaf(100 + i, s, 0.01)
           for i, (n, s) in enumerate(MLP_SHAPES.items())}
  num_ranked = sum(int(np.prod(s)) for s in MLP_SHAPES.values() if len(s) >= 2)
  cdr_tx = optax_cdr.cdr(1 - KEEP, 1e-3)
  wd_tx = optax.add_decayed_weights(1e-3)
  ranked = [n for n, shape in MLP_SHAPES.items() if len(shape) >= 2]
  one_pass = lambda g, w: _one_pass([
      optax_cdr._selection.Source((g[n], w[n]), lambda a, b: jnp.abs(a * b))
      for n in ranked])
  fns = {"cdr": jax.jit(cdr_tx.update),
         "add_decayed_weights": jax.jit(wd_tx.update),
         "one pass": jax.jit(one_pass)}
  args = {"cdr": (grads, cdr_tx.init(params), params),
          "add_decayed_weights": (grads, wd_tx.init(params), params),
          "one pass": (grads, params)}
  times = _median_times(fns, args, repeats, slow_s=float("inf"))
  temp = _cdr_update_temp_bytes(grads, params)
  return num_ranked, times, temp


def _fmt_ms(s: float) -> str:
  return f"{1e3 * s:.3g} ms" if s < 1 else f"{s:.3g} s"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--sizes", default="1e4,3e4,1e5,1e6,1e7,2.5e7,1e8",
                      help="comma-separated numbers of scores m")
  parser.add_argument("--repeats", type=int, default=7,
                      help="timed runs per method (median reported)")
  parser.add_argument("--mlp-repeats", type=int, default=31,
                      help="timed runs of the MLP-shaped updates")
  parser.add_argument("--slow-seconds", type=float, default=2.0,
                      help="a method slower than this runs only once")
  parser.add_argument("--baselines-up-to", type=float, default=1e8,
                      help="skip lax.top_k/sort/torch above this m")
  parser.add_argument("--out", default=None, help="also write the tables here")
  args = parser.parse_args(argv)
  sizes = [int(float(s)) for s in args.sizes.split(",")]

  lines = [f"jax {jax.__version__}, backend {jax.default_backend()}, "
           f"{jax.devices()[0].device_kind}, {os.cpu_count()} cores; "
           f"k = {KEEP} m; medians of {args.repeats} interleaved runs", ""]
  head = ("| m | ours (auto) | radix | bisection | lax.top_k | jnp.sort | "
          "torch.topk | torch.kthvalue | jnp.sum | top_k / ours | sort / ours "
          "| torch.topk / ours | torch.kthvalue / ours | ours / sum "
          "| one pass | ours / one pass |")
  lines += [head, "|" + "---|" * (head.count("|") - 1)]
  update_lines = ["", "| m | chain(cdr, sgd) | chain(add_decayed_weights, sgd) "
                  "| ratio |", "|---|---|---|---|"]
  memory_lines = ["", "| m | scores | ours temp | lax.top_k temp | jnp.sort "
                  "temp | cdr update temp (bytes per ranked entry) |",
                  "|---|---|---|---|---|---|"]
  for m in sizes:
    times, memory, steps = benchmark_size(
        m, args.repeats, args.slow_seconds, m <= args.baselines_up_to)
    get = lambda n: times.get(n)
    ours = times["kth_largest[auto]"]
    ratio = lambda n: f"{get(n) / ours:.1f}x" if get(n) else "-"
    cell = lambda n: _fmt_ms(get(n)) if get(n) else "-"
    lines.append(
        f"| {m:.3g} | {cell('kth_largest[auto]')} | "
        f"{cell('kth_largest[radix]')} | {cell('kth_largest[bisection]')} | "
        f"{cell('lax.top_k')} | {cell('jnp.sort')} | {cell('torch.topk')} | "
        f"{cell('torch.kthvalue')} | {cell('jnp.sum')} | {ratio('lax.top_k')} | "
        f"{ratio('jnp.sort')} | {ratio('torch.topk')} | "
        f"{ratio('torch.kthvalue')} | {ours / times['jnp.sum']:.1f}x | "
        f"{cell('one pass')} | {ours / times['one pass']:.2f}x |")
    cdr_t, sgd_t = steps["chain(cdr, sgd)"], steps["chain(wd, sgd)"]
    update_lines.append(f"| {m:.3g} | {_fmt_ms(cdr_t)} | {_fmt_ms(sgd_t)} | "
                        f"{cdr_t / sgd_t:.2f}x |")
    mib = lambda b: f"{b / 2**20:.1f} MiB"
    memory_lines.append(
        f"| {m:.3g} | {mib(4 * m)} | {mib(memory['ours'])} | "
        f"{mib(memory['lax.top_k'])} | {mib(memory['jnp.sort'])} | "
        f"{mib(memory['cdr update'])} ({memory['cdr update'] / m:.2f}) |")
    print(lines[-1], flush=True)

  num_ranked, mlp, mlp_temp = benchmark_mlp_update(args.mlp_repeats)
  mlp_lines = [
      "", f"`cdr` update alone vs `add_decayed_weights` alone, MLP "
      f"784-1024-1024-10 ({num_ranked:,} ranked weights; medians of "
      f"{args.mlp_repeats}):", "",
      "| cdr | add_decayed_weights | ratio | one pass | one pass / "
      "add_decayed_weights | cdr temp (bytes per ranked entry) |",
      "|---|---|---|---|---|---|",
      f"| {_fmt_ms(mlp['cdr'])} | {_fmt_ms(mlp['add_decayed_weights'])} | "
      f"{mlp['cdr'] / mlp['add_decayed_weights']:.2f}x | "
      f"{_fmt_ms(mlp['one pass'])} | "
      f"{mlp['one pass'] / mlp['add_decayed_weights']:.2f}x | "
      f"{mlp_temp / 2**20:.1f} MiB ({mlp_temp / num_ranked:.2f}) |"]
  report = "\n".join(lines + update_lines + memory_lines + mlp_lines)
  print("\n" + report)
  if args.out:
    with open(args.out + ".tmp", "w") as f:
      f.write(report + "\n")
    os.replace(args.out + ".tmp", args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
  main()
