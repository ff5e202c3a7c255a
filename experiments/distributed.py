"""Where a run's devices come from: the mesh (and, across hosts, the processes)."""

import jax

from experiments import errors


def make_mesh(num_devices: int | None) -> jax.sharding.Mesh:
  """A 1-D 'data' mesh over the first `num_devices` local devices (None: all)."""
  devices = jax.local_devices()
  if num_devices is not None:
    if not 1 <= num_devices <= len(devices):
      raise errors.UserError(
          f"num_devices={num_devices}, but {len(devices)} local devices exist."
      )
    devices = devices[:num_devices]
  return jax.make_mesh(
      (len(devices),),
      ("data",),
      axis_types=(jax.sharding.AxisType.Auto,),
      devices=devices,
  )
