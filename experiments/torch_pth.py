"""Reads the tensors of a PyTorch `.pth` file into numpy, without torch.

`torch.save` (torch >= 1.6) writes a zip archive: `<name>/data.pkl` pickles
the object with each tensor as a call to
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`, where
`storage` is a persistent id `("storage", torch.<Type>Storage, key,
location, numel)` whose bytes are the record `<name>/data/<key>`, in the
byte order of `<name>/byteorder` (little when absent). The unpickler below
resolves those few globals to numpy and refuses any other, so a file cannot
run code on load (as `torch.load(weights_only=True)`). The format is
torch/serialization.py's `_save` and `_load`.
"""

import collections
import pickle
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

from experiments import errors

# torch's legacy typed-storage names (what `_save` pickles as the storage
# type) and their element types.
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
  """What a `torch.<Type>Storage` global stands for: its element type."""

  def __init__(self, dtype):
    self.dtype = np.dtype(dtype)


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False,
                    backward_hooks=None, metadata=None):
  """`torch._utils._rebuild_tensor_v2`: a strided view of a storage, copied."""
  del requires_grad, backward_hooks, metadata
  item = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(
      storage[offset:], shape=tuple(size),
      strides=tuple(s * item for s in stride))
  return np.array(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None,
                       state=None):
  """`torch._utils._rebuild_parameter(_with_state)`: the tensor itself."""
  del requires_grad, backward_hooks, state
  return data


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype)
       for name, dtype in STORAGE_DTYPES.items()},
}


class _Unpickler(pickle.Unpickler):
  """Resolves torch's tensor records to numpy and refuses other globals."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str,
               byteorder: str, path: str):
    super().__init__(file)
    self._archive = archive
    self._prefix = prefix
    self._byteorder = byteorder
    self._path = path
    self._storages = {}

  def find_class(self, module, name):
    if (module, name) not in _GLOBALS:
      raise errors.UserError(
          f"{self._path}: the pickle refers to {module}.{name}, which is not "
          "part of a tensor state dict (only tensors, dicts and numbers are "
          "read).")
    return _GLOBALS[(module, name)]

  def persistent_load(self, pid):
    kind, storage_type, key, _, numel = pid[:5]
    if kind != "storage" or not isinstance(storage_type, _StorageType):
      raise errors.UserError(f"{self._path}: unknown record {pid!r}.")
    if key not in self._storages:
      dtype = storage_type.dtype.newbyteorder(
          "<" if self._byteorder == "little" else ">")
      data = self._archive.read(f"{self._prefix}/data/{key}")
      self._storages[key] = np.frombuffer(data, dtype, count=numel)
    return self._storages[key]


def read(path: str) -> Any:
  """The object `torch.save` wrote to `path`, its tensors as numpy arrays.

  Args:
    path: a `.pth` / `.pt` file in torch's zip format.

  Returns:
    The saved object (for a state dict, an ordered dict of arrays).

  Raises:
    UserError: if the file is not in torch's zip format, or the pickle holds
      something other than tensors, containers and numbers.
  """
  if not zipfile.is_zipfile(path):
    raise errors.UserError(
        f"{path} is not a PyTorch zip archive (torch.save since torch 1.6); "
        "older files can be re-saved with torch.save(torch.load(path), path).")
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
    if len(pickles) != 1:
      raise errors.UserError(
          f"{path} is a zip archive but not one torch.save wrote (expected one "
          f"<name>/data.pkl record, found {len(pickles)}).")
    prefix = pickles[0][: -len("/data.pkl")]
    names = set(archive.namelist())
    byteorder = (archive.read(f"{prefix}/byteorder").decode().strip()
                 if f"{prefix}/byteorder" in names else "little")
    with archive.open(pickles[0]) as f:
      try:
        return _Unpickler(f, archive, prefix, byteorder, path).load()
      except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
        if isinstance(e, errors.UserError):
          raise
        raise errors.UserError(f"{path}: unreadable torch archive ({e}).") from e
