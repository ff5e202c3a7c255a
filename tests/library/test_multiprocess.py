"""`cdr` under jax.distributed: 2 processes x 4 CPU devices = 1 process x 8.

Three subprocesses run tests/multiprocess_worker.py: two join one
jax.distributed job on localhost (CPU collectives across processes go through
gloo), a third holds all 8 devices alone. Each builds the same global arrays
over a mesh of the 8 global devices, runs a jitted chain(cdr, sgd) update and
critical_mask, gathers the results and writes them to a .npz file. The three
processes take 30-40 s on 2 busy CPU cores, once for the module: part of the
default suite, since scaling past one host is a promise of the library.
"""

import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import cdr_reference
import multiprocess_worker as worker

_TESTS = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_TESTS))
_TIMEOUT_S = 240
# The radix select's larger histogram: 2**16 bins.
_MAX_COUNTERS = 65_536
_COUNTS = ("process_count", "device_count", "local_device_count")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start(out, num_devices: int, *args) -> subprocess.Popen:
  # With the script's folder first on sys.path, the empty tests/optax_cdr/
  # would shadow the package unless the repository comes before it.
  pythonpath = [_REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(
      os.pathsep) if p]
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}",
             PYTHONPATH=os.pathsep.join(pythonpath))
  return subprocess.Popen(
      [sys.executable, os.path.join(_TESTS, "multiprocess_worker.py"),
       str(out), *args],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The .npz contents of "single" (1 x 8 devices), "p0" and "p1" (2 x 4)."""
  tmp = tmp_path_factory.mktemp("multiprocess")
  port = str(_free_port())
  procs = {"single": _start(tmp / "single.npz", 8)}
  for i in range(2):
    procs[f"p{i}"] = _start(tmp / f"p{i}.npz", 4, "--port", port,
                            "--process-id", str(i), "--num-processes", "2")
  deadline = time.monotonic() + _TIMEOUT_S
  logs = {}
  try:
    for name, proc in procs.items():
      try:
        logs[name] = proc.communicate(
            timeout=max(1.0, deadline - time.monotonic()))[0]
      except subprocess.TimeoutExpired:
        pytest.fail(f"worker {name} ran past {_TIMEOUT_S} s")
  finally:
    for proc in procs.values():
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  for name, proc in procs.items():
    assert proc.returncode == 0, f"worker {name}:\n{logs[name][-4000:]}"
  return {name: dict(np.load(tmp / f"{name}.npz")) for name in procs}


def _results(run):
  return {k: v for k, v in run.items()
          if not k.endswith("__hlo") and k not in _COUNTS}


def test_two_processes_match_one_process_bit_for_bit(runs):
  single, p0, p1 = runs["single"], runs["p0"], runs["p1"]
  assert [int(single[k]) for k in _COUNTS] == [1, 8, 8]
  for p in (p0, p1):
    assert [int(p[k]) for k in _COUNTS] == [2, 8, 4]
  want = _results(single)
  # Per run: 4 updates, 4 masks, 4 shardings, 3 statistics.
  assert len(want) == len(worker.RUNS) * 15
  for run in (p0, p1):
    got = _results(run)
    assert got.keys() == want.keys()
    for key, value in want.items():
      assert got[key].dtype == value.dtype, key
      assert got[key].shape == value.shape, key
      assert got[key].tobytes() == value.tobytes(), key
  # The updates stay sharded like their parameters: nothing was gathered.
  for axis, method in worker.RUNS:
    assert "'x'" in str(want[f"{axis}__{method}__spec__dense"])
    assert "'x'" in str(want[f"{axis}__{method}__spec__head"])


def test_results_match_the_numpy_reference(runs):
  params, grads = worker.host_data()
  names = list(params)
  ranked = [np.ndim(params[n]) >= 2 for n in names]
  updates, masks, t, num_critical, m = cdr_reference.cdr_update(
      [grads[n] for n in names], [params[n] for n in names], ranked,
      worker.TAU, worker.LAM)
  assert num_critical > int((1 - worker.TAU) * m)  # ties at the threshold
  got = runs["p0"]
  for axis, method in worker.RUNS:
    tag = f"{axis}__{method}"
    assert got[f"{tag}__threshold"] == t
    assert got[f"{tag}__num_critical"] == num_critical
    assert got[f"{tag}__num_ranked"] == m
    for name, u, mask in zip(names, updates, masks):
      np.testing.assert_array_equal(got[f"{tag}__mask__{name}"], mask)
      np.testing.assert_allclose(got[f"{tag}__updates__{name}"],
                                 np.float32(-worker.LR) * u,
                                 rtol=1e-6, atol=1e-7)


def _collectives(hlo: str):
  """(op, number of elements of its result) for each cross-device op."""
  found = []
  pattern = (r"= (\([^)]*\)|\S+) ([a-z-]*(?:all-reduce|all-gather|all-to-all"
             r"|collective-permute|reduce-scatter|collective-broadcast)"
             r"[a-z-]*)\(")
  for result_type, op in re.findall(pattern, hlo):
    shapes = re.findall(r"[a-z0-9]+\[([0-9,]*)\]", result_type)
    size = sum(int(np.prod([int(d) for d in s.split(",") if d]))
               for s in shapes)
    found.append((op, size))
  return found


def test_only_count_histograms_cross_processes(runs):
  """The compiled multi-process update all-reduces counts, never scores.

  radix: two histograms per pass (u32[32768], then u32[65536]), one per
  sharded leaf ("dense" rows, "head" columns); bisection: pairs of uint32
  counts inside its loop. No all-gather, all-to-all or permute.
  """
  for p in ("p0", "p1"):
    for axis, method in worker.RUNS:
      found = _collectives(str(runs[p][f"{axis}__{method}__hlo"]))
      assert found, (p, axis, method)
      assert {op for op, _ in found} == {"all-reduce"}, found
      assert max(size for _, size in found) <= _MAX_COUNTERS, found


def test_initialize_after_import():
  """What a user writes: imports first, then jax.distributed.initialize()."""
  code = ("import jax, optax_cdr; jax.distributed.initialize("
          f"coordinator_address='localhost:{_free_port()}', num_processes=1, "
          "process_id=0)")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd=_REPO,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
