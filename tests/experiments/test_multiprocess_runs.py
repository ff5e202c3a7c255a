"""Runs across processes: 2 processes x 2 CPU devices = 1 process x 4 devices.

Each case launches `python -m experiments.main` as one process holding 4
fake CPU devices, and as two processes of one `jax.distributed` job
(localhost coordinator, gloo collectives) holding 2 each, on a 400-image
subset of the Debian Fashion-MNIST files; the per-epoch metrics and the
summaries must agree. A killed process stops its partner within 60 s, and
relaunching both resumes to the uninterrupted result.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments.data import idx
from tests.experiments.conftest import REPO
from tests.experiments.conftest import TIME_FIELDS

pytestmark = pytest.mark.skipif(
    not os.path.isdir(idx.DEBIAN_FASHION_MNIST_DIR),
    reason="needs the Debian Fashion-MNIST files")

# Sums of per-device partial results are reduced in another order by the
# gloo all-reduce than inside one process: equal to float32 rounding.
_RTOL = 1e-6


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _command(workdir, method, pipeline, epochs=2, extra=()):
  fields = dict(
      dataset="fashion_mnist", data_source="idx", model="mlp",
      mlp_hidden="(64,)", num_train_examples=400, batch_size=32,
      eval_batch_size=100, num_epochs=epochs, lr_milestones="(10,)",
      noise_type="symmetric", noise_rate=0.4, method=method,
      input_pipeline=pipeline, log_progress=False,
  )
  return [sys.executable, "-m", "experiments.main",
          "--config=experiments/configs/default.py", f"--workdir={workdir}",
          *(f"--config.{k}={v}" for k, v in fields.items()), *extra]


def _env(devices):
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _start_pair(workdir, method, pipeline, epochs=2, extra=()):
  port = _free_port()
  return [
      subprocess.Popen(
          _command(workdir, method, pipeline, epochs, (
              f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
              f"--process_id={i}", "--heartbeat_timeout_s=10", *extra)),
          cwd=REPO, env=_env(2), stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT, text=True)
      for i in range(2)
  ]


def _finish(processes, timeout=400):
  outputs = [p.communicate(timeout=timeout)[0] for p in processes]
  for p, out in zip(processes, outputs):
    assert p.returncode == 0, out[-3000:]
  return outputs


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _assert_same_run(a, b):
  ra, rb = _records(a), _records(b)
  assert len(ra) == len(rb)
  for x, y in zip(ra, rb):
    for key, value in x.items():
      if key in TIME_FIELDS:
        continue
      if isinstance(value, float):
        np.testing.assert_allclose(y[key], value, rtol=_RTOL, err_msg=key)
      else:
        assert y[key] == value, key
  with open(os.path.join(a, "summary.json")) as f:
    sa = json.load(f)
  with open(os.path.join(b, "summary.json")) as f:
    sb = json.load(f)
  assert sa["best_epoch"] == sb["best_epoch"]
  assert sa["test_acc_at_best_val"] == sb["test_acc_at_best_val"]
  assert (sa["num_devices"], sb["num_devices"]) == (4, 4)


def _one_process(workdir, method, pipeline):
  done = subprocess.run(_command(workdir, method, pipeline), cwd=REPO,
                        env=_env(4), capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("method,pipeline", [
    ("ce", "device"),
    pytest.param("cdr_ref", "device", marks=pytest.mark.slow),
    pytest.param("coteaching", "device", marks=pytest.mark.slow),
    pytest.param("ce", "grain", marks=pytest.mark.slow),
    pytest.param("cdr_ref", "grain", marks=pytest.mark.slow),
    pytest.param("coteaching", "grain", marks=pytest.mark.slow),
])
def test_two_processes_equal_one(tmp_path, method, pipeline):
  _one_process(tmp_path / "one", method, pipeline)
  outputs = _finish(_start_pair(tmp_path / "two", method, pipeline))
  _assert_same_run(tmp_path / "one", tmp_path / "two")
  # Process 0 reports; process 1 writes nothing and prints nothing.
  assert "epoch 1/2" in outputs[0] and "epoch 1/2" not in outputs[1]


@pytest.mark.slow
def test_a_killed_process_stops_its_partner_and_both_resume(tmp_path):
  _one_process(tmp_path / "whole", "cdr_ref", "device")
  processes = _start_pair(tmp_path / "killed", "cdr_ref", "device", epochs=2)
  checkpoints = tmp_path / "killed" / "checkpoints"
  deadline = time.time() + 300
  while time.time() < deadline and not (
      checkpoints.exists() and any(d.isdigit() for d in os.listdir(checkpoints))):
    time.sleep(0.05)
  processes[1].send_signal(signal.SIGKILL)
  killed_at = time.time()
  out = processes[0].communicate(timeout=120)[0]
  assert time.time() - killed_at < 60
  assert processes[0].returncode != 0, out[-2000:]
  _finish(_start_pair(tmp_path / "killed", "cdr_ref", "device", epochs=2))
  _assert_same_run(tmp_path / "whole", tmp_path / "killed")
