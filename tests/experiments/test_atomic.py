"""Atomic writes, and what a user sees when the disk is full."""

import errno
import os

import numpy as np
import pytest

from experiments import atomic
from experiments import cli


def test_write_atomic_replaces_whole_files(tmp_path):
  path = tmp_path / "out.json"
  atomic.write_json(str(path), {"a": 1})
  atomic.write_json(str(path), {"a": 2})
  assert path.read_text() == '{\n  "a": 2\n}\n'
  atomic.write_npy(str(tmp_path / "ids.npy"), np.arange(5))
  np.testing.assert_array_equal(np.load(tmp_path / "ids.npy"), np.arange(5))
  assert sorted(os.listdir(tmp_path)) == ["ids.npy", "out.json"]


def test_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
  path = tmp_path / "metrics.jsonl"
  atomic.write_jsonl(str(path), [{"epoch": 1}])

  def full_disk(fd):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "fsync", full_disk)
  with pytest.raises(OSError, match="No space left"):
    atomic.write_jsonl(str(path), [{"epoch": 1}, {"epoch": 2}])
  assert path.read_text() == '{"epoch": 1}\n'
  assert os.listdir(tmp_path) == ["metrics.jsonl"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_filesystem_errors_are_one_line(code, monkeypatch):
  def main(argv):
    raise OSError(code, os.strerror(code), "/results/x")

  monkeypatch.setattr(cli.app, "run", lambda f, flags_parser: f([]))
  with pytest.raises(SystemExit) as exit_info:
    cli.run(main)
  message = str(exit_info.value.code)
  assert message.startswith(f"error: [Errno {code}]") and "rerun the same" in message


def test_other_errors_keep_their_traceback(monkeypatch):
  def main(argv):
    raise OSError(errno.EIO, "I/O error")

  monkeypatch.setattr(cli.app, "run", lambda f, flags_parser: f([]))
  with pytest.raises(OSError, match="I/O error"):
    cli.run(main)
