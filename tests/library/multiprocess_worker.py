"""One process of tests/library/test_multiprocess.py: a sharded `cdr` step, to .npz.

Without --port it is one process holding all the mesh's devices; with --port it
joins a `jax.distributed` job on localhost as process --process-id of
--num-processes. Either way it builds the same global arrays over a mesh of
every global device, runs one jitted `chain(cdr, sgd)` update and
`critical_mask` per (axis type, method) in RUNS, gathers the results to every
process and writes them, with the compiled HLO of the update, to a .npz file.
"""

import argparse

import jax
import numpy as np
import optax
import optax_cdr
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

TAU, LAM, LR = 0.3, 1e-3, 0.1
# name: (shape, partition spec over the mesh axis "x" of all global devices).
LEAVES = {
    "dense": ((256, 64), P("x", None)),  # rows split over all 8 devices
    "conv": ((3, 3, 16, 32), P()),  # replicated
    "head": ((64, 16), P(None, "x")),  # columns split
    "bias": ((64,), P("x")),  # not ranked (ndim 1), passes through
}
AXIS_TYPES = {"explicit": AxisType.Explicit, "auto": AxisType.Auto}
# (mesh axis type, selection method): both methods on explicit axes (the
# default of jax.make_mesh), the default method on automatic ones.
RUNS = (("explicit", "radix"), ("explicit", "bisection"), ("auto", "radix"))


def host_data():
  """The same (params, grads) in every process, as NumPy arrays.

  22,016 ranked entries, so "auto" would choose the radix select. "dense"
  holds only the magnitudes 1 and 2, so thousands of scores tie at the
  threshold (1.0); "conv" has one NaN gradient, left out of the ranking.
  """
  rng = np.random.default_rng(0)
  draw = lambda shape: rng.standard_normal(shape).astype(np.float32)
  params = {name: draw(shape) for name, (shape, _) in LEAVES.items()}
  grads = {name: draw(shape) for name, (shape, _) in LEAVES.items()}
  for tree in (params, grads):
    d = tree["dense"]
    tree["dense"] = np.sign(d) * rng.integers(1, 3, d.shape).astype(np.float32)
  grads["conv"][1, 2, 3, 4] = np.nan
  return params, grads


def global_arrays(tree, mesh):
  """Global arrays: each process fills only the shards its devices hold."""
  def build(name, a):
    sharding = NamedSharding(mesh, LEAVES[name][1])
    return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])
  return {name: build(name, a) for name, a in tree.items()}


def gather(tree):
  return jax.tree.map(
      lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)),
      tree)


def run(results, axis_name, method, params_np, grads_np):
  mesh = jax.make_mesh((jax.device_count(),), ("x",),
                       axis_types=(AXIS_TYPES[axis_name],))
  params = global_arrays(params_np, mesh)
  grads = global_arrays(grads_np, mesh)
  tx = optax.chain(optax_cdr.cdr(TAU, LAM, method=method), optax.sgd(LR))
  state = jax.jit(tx.init)(params)
  update = jax.jit(tx.update).lower(grads, state, params).compile()
  updates, state = update(grads, state, params)
  masks = jax.jit(
      lambda g, p: optax_cdr.critical_mask(g, p, TAU, method=method)
  )(grads, params)

  tag = f"{axis_name}__{method}"
  for name, u in gather(updates).items():
    results[f"{tag}__updates__{name}"] = u
    results[f"{tag}__spec__{name}"] = np.array(str(updates[name].sharding.spec))
  for name, m in gather(masks).items():
    results[f"{tag}__mask__{name}"] = m
  for field in ("threshold", "num_critical", "num_ranked"):
    results[f"{tag}__{field}"] = gather(
        optax.tree_utils.tree_get(state, field))
  results[f"{tag}__hlo"] = np.array(update.as_text())


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("out", help="where to write the results (.npz)")
  parser.add_argument("--port", type=int, default=None,
                      help="coordinator port on localhost; none: no "
                      "jax.distributed, one process")
  parser.add_argument("--process-id", type=int, default=0)
  parser.add_argument("--num-processes", type=int, default=2)
  args = parser.parse_args()
  if args.port is not None:
    # Cross-process CPU collectives; gloo is jax 0.10.2's default, named here
    # so that the test does not rest on a default.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"localhost:{args.port}",
        num_processes=args.num_processes, process_id=args.process_id,
        initialization_timeout=120)
  results = {
      "process_count": np.array(jax.process_count()),
      "device_count": np.array(jax.device_count()),
      "local_device_count": np.array(jax.local_device_count()),
  }
  params_np, grads_np = host_data()
  for axis_name, method in RUNS:
    run(results, axis_name, method, params_np, grads_np)
  np.savez(args.out, **results)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
