"""Writes a state dict of numpy arrays as `torch.save` does, without torch.

For the tests of experiments/torch_pth.py and experiments/pretrained.py: a
zip archive (records stored, data aligned to 64 bytes as torch's writer
does) holding `<name>/data.pkl` - a protocol-2 pickle of a
`collections.OrderedDict` whose values are `_rebuild_tensor_v2` calls on
persistent storage ids - one `<name>/data/<key>` record per tensor, and the
`byteorder` and `version` records. The pickle is written opcode by opcode:
Python's pickler cannot name torch's globals without importing torch.
"""

import collections
import struct
import zipfile

import numpy as np

from experiments import torch_pth

_STORAGE_NAMES = {np.dtype(d): n for n, d in torch_pth.STORAGE_DTYPES.items()}
_ALIGNMENT = 64  # torch's kFieldAlignment (caffe2/serialize/inline_container.h)


def _global(module: str, name: str) -> bytes:
  return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(value: str) -> bytes:
  data = value.encode()
  return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
  if -2**31 <= value < 2**31:
    return b"J" + struct.pack("<i", value)
  data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
  return b"\x8a" + bytes([len(data)]) + data


def _tuple(items: list[bytes]) -> bytes:
  return b")" if not items else b"(" + b"".join(items) + b"t"


def _ordered_dict(items: list[tuple[bytes, bytes]]) -> bytes:
  body = _global("collections", "OrderedDict") + b")R"
  if items:
    body += b"(" + b"".join(k + v for k, v in items) + b"u"
  return body


def _tensor(key: str, array: np.ndarray) -> bytes:
  storage = _tuple([
      _str("storage"), _global("torch", _STORAGE_NAMES[array.dtype]),
      _str(key), _str("cpu"), _int(array.size),
  ]) + b"Q"
  # C-contiguous strides, in elements.
  strides = [s // array.itemsize for s in array.strides] if array.size else [
      1] * array.ndim
  args = _tuple([
      storage, _int(0), _tuple([_int(d) for d in array.shape]),
      _tuple([_int(s) for s in strides]), b"\x89", _ordered_dict([]),
  ])
  return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def _write_aligned(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
  info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
  offset = archive.fp.tell() + 30 + len(name.encode()) + 4
  pad = -offset % _ALIGNMENT
  info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
  archive.writestr(info, data, compress_type=zipfile.ZIP_STORED)


def save(state_dict: dict[str, np.ndarray], path: str,
         archive_name: str = "archive") -> None:
  """Writes `state_dict` (name -> array) to `path` in torch's zip format."""
  arrays = collections.OrderedDict(
      (k, np.array(v, order="C")) for k, v in state_dict.items())
  pickle_bytes = b"\x80\x02" + _ordered_dict([
      (_str(name), _tensor(str(i), a)) for i, (name, a) in
      enumerate(arrays.items())
  ]) + b"."
  with zipfile.ZipFile(path, "w") as archive:
    _write_aligned(archive, f"{archive_name}/data.pkl", pickle_bytes)
    _write_aligned(archive, f"{archive_name}/byteorder", b"little")
    for i, a in enumerate(arrays.values()):
      _write_aligned(archive, f"{archive_name}/data/{i}",
                     a.astype(a.dtype.newbyteorder("<")).tobytes())
    _write_aligned(archive, f"{archive_name}/version", b"3\n")
