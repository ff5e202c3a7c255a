"""Where a run's devices come from: the processes, the mesh, global arrays.

One process is the default. Several processes (a TPU pod slice, a
multi-node GPU job, or N local processes on a CPU) join one
`jax.distributed` job with the same command run N times:

  python -m experiments.main ... --coordinator_address=host0:1234 \\
      --num_processes=N --process_id=I        # or: --distributed=auto

`--distributed=auto` calls `jax.distributed.initialize()` without arguments,
which reads SLURM, Open MPI, Cloud TPU and GKE environments. The mesh then
spans every process's devices; each process computes the same noise, split
and epoch order from the seed (checked at setup by `check_same`), feeds
only its rows of each global batch, and only process 0 writes files.

A process that dies stops the others: the coordination service misses its
heartbeats for `heartbeat_timeout_s` and ends every task with an error, so
no survivor waits forever in a collective.
"""

import hashlib
import os
import sys
from typing import Callable, Sequence

from absl import flags
import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from experiments import errors

_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "off", ["off", "auto"],
    "auto: jax.distributed.initialize() from the cluster's environment "
    "(SLURM, Open MPI, Cloud TPU, GKE).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "HOST:PORT of process 0, for a multi-process run.")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Processes of a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index in [0, num_processes).")
_HEARTBEAT_S = flags.DEFINE_integer(
    "heartbeat_timeout_s", 20,
    "A process silent this long is declared dead and the job stops.")


def initialize_from_flags() -> None:
  """Joins the job the flags describe (nothing for a one-process run)."""
  explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if _DISTRIBUTED.value == "off" and all(v is None for v in explicit):
    return
  if _DISTRIBUTED.value == "auto":
    if any(v is not None for v in explicit):
      raise errors.UserError(
          "--distributed=auto reads the cluster's environment; drop "
          "--coordinator_address / --num_processes / --process_id.")
    kwargs = {}
  else:
    if any(v is None for v in explicit):
      raise errors.UserError(
          "a multi-process run needs all of --coordinator_address, "
          "--num_processes and --process_id (or --distributed=auto).")
    if not 0 <= _PROCESS_ID.value < _NUM_PROCESSES.value:
      raise errors.UserError(
          f"--process_id={_PROCESS_ID.value} is outside [0, "
          f"{_NUM_PROCESSES.value}).")
    kwargs = dict(coordinator_address=_COORDINATOR.value,
                  num_processes=_NUM_PROCESSES.value,
                  process_id=_PROCESS_ID.value)
  # CPU collectives across processes (jax 0.10's default, named here; it
  # does not touch accelerators' collectives).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      **kwargs,
      heartbeat_timeout_seconds=_HEARTBEAT_S.value,
      shutdown_timeout_seconds=_HEARTBEAT_S.value,
  )


def is_writer() -> bool:
  """Whether this process writes the run's files (process 0)."""
  return jax.process_index() == 0


def quiet_unless_writer() -> None:
  """Process 0 prints the run's progress; the others only their errors."""
  if not is_writer():
    sys.stdout = open(os.devnull, "w")  # pylint: disable=consider-using-with


def make_mesh(num_devices: int | None) -> jax.sharding.Mesh:
  """A 1-D 'data' mesh over every process's devices, or the first
  `num_devices` of a one-process run."""
  devices = jax.devices()
  if num_devices is not None:
    if jax.process_count() > 1 and num_devices != len(devices):
      raise errors.UserError(
          f"num_devices={num_devices}: a multi-process run uses all "
          f"{len(devices)} devices of its processes (leave it unset).")
    if not 1 <= num_devices <= len(devices):
      raise errors.UserError(
          f"num_devices={num_devices}, but {len(devices)} devices exist."
      )
    devices = devices[:num_devices]
  return jax.make_mesh(
      (len(devices),),
      ("data",),
      axis_types=(jax.sharding.AxisType.Auto,),
      devices=devices,
  )


def replicate(tree, mesh: jax.sharding.Mesh):
  """Host arrays (the same in every process) replicated over the mesh."""
  sharding = NamedSharding(mesh, P())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_callback(
          np.shape(x), sharding, lambda index: np.asarray(x)[index]),
      tree,
  )


def gathered_outputs(mesh: jax.sharding.Mesh) -> dict:
  """jit options that replicate a function's outputs in a multi-process run,
  so that every process reads every logit; one process reads its sharded
  outputs as they are (an all-gather there would only add a collective,
  which independent calls on one host's CPU devices can deadlock on)."""
  if jax.process_count() == 1:
    return {}
  return {"out_shardings": NamedSharding(mesh, P())}


def in_order(result):
  """`result`, waited for in a multi-process run.

  Calls that do not depend on each other (the evaluation batches) may run
  concurrently on a process's devices; their cross-process collectives
  would then meet in different orders on different processes and
  deadlock (seen with gloo on CPU). Waiting for each one keeps the order.
  """
  return jax.block_until_ready(result) if jax.process_count() > 1 else result


def check_same(what: str, arrays: Callable[[], Sequence[np.ndarray]]) -> None:
  """Stops every process with one line if `arrays()` differ between them
  (computed only in a multi-process run)."""
  if jax.process_count() == 1:
    return
  digest = hashlib.sha256()
  for a in arrays():
    digest.update(np.ascontiguousarray(a).tobytes())
  local = np.frombuffer(digest.digest()[:8], np.int64)
  everyone = multihost_utils.process_allgather(local)
  if not np.all(everyone == everyone[0]):
    raise errors.UserError(
        f"the processes computed different {what}: their hashes differ "
        "(same seed, same data files and the same code on every host?).")
