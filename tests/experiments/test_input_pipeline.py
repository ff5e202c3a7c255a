"""The grain input path: same batches as the device path, workers, resumption."""

import os

import numpy as np
import pytest

from experiments import train
from experiments.data import idx
from experiments.data import input_pipeline
from experiments.data import specs
from tests.experiments.conftest import make_tiny_config
from tests.experiments.conftest import make_tiny_dataset
from tests.experiments.conftest import read_metrics
from tests.experiments.conftest import without_times


def _run(tmp_path, name, **overrides):
  config = make_tiny_config(num_epochs=2, **overrides)
  workdir = str(tmp_path / name)
  summary = train.train_and_evaluate(config, workdir, make_tiny_dataset())
  return summary, without_times(read_metrics(workdir))


@pytest.mark.parametrize("method", ["ce", "cdr_ref", "coteaching"])
def test_grain_path_equals_device_path(tmp_path, method):
  """Same seeded order, no augmentation: the same per-epoch metrics."""
  overrides = dict(method=method, model="mlp", mlp_hidden=(32,))
  device, device_metrics = _run(tmp_path, "device", **overrides)
  grain, grain_metrics = _run(tmp_path, "grain", input_pipeline="grain",
                              **overrides)
  assert grain_metrics == device_metrics
  assert grain["test_acc_at_best_val"] == device["test_acc_at_best_val"]


def test_scan_calls_on_the_grain_path(tmp_path):
  """Several steps per call (a stacked batch in a lax.scan) change nothing."""
  overrides = dict(method="ce", model="mlp", mlp_hidden=(32,),
                   input_pipeline="grain")
  _, one = _run(tmp_path, "one", **overrides)
  _, scanned = _run(tmp_path, "scan", steps_per_call=4, **overrides)
  for a, b in zip(one, scanned):
    for key, value in a.items():
      if isinstance(value, float):
        np.testing.assert_allclose(b[key], value, rtol=1e-5, err_msg=key)
      else:
        assert b[key] == value, key


def _store(n=40, size=12):
  rng = np.random.default_rng(0)
  return input_pipeline.SplitStore(
      rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
      rng.integers(0, 10, n).astype(np.int32), np.ones(n, bool))


def _all_batches(num_workers, policy="crop_flip"):
  prep = input_pipeline.Preprocessing(policy, True, None, None, seed=3)
  order = np.random.default_rng(1).permutation(40)
  dataset = input_pipeline.batches(_store(), order, 8, prep, epoch=2,
                                   num_workers=num_workers)
  return list(dataset)


def test_worker_count_does_not_change_batches():
  """Augmentation draws from (seed, epoch, index): 0 and 2 workers agree."""
  inline, workers = _all_batches(0), _all_batches(2)
  assert len(inline) == len(workers) == 5
  for a, b in zip(inline, workers):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_batches_follow_the_order_and_augment():
  batches = _all_batches(0)
  order = np.random.default_rng(1).permutation(40)
  np.testing.assert_array_equal(
      np.concatenate([b["indices"] for b in batches]), order)
  plain = _all_batches(0, policy="none")
  changed = [not np.array_equal(a["images"], b["images"])
             for a, b in zip(batches, plain)]
  assert all(changed)


def test_iterator_state_resumes_at_the_same_batch():
  prep = input_pipeline.Preprocessing("crop_flip", True, None, None, seed=3)
  order = np.arange(40)
  dataset = input_pipeline.batches(_store(), order, 8, prep, epoch=1)
  iterator = input_pipeline.iterate(dataset)
  next(iterator), next(iterator)
  state = iterator.get_state()
  rest = list(iterator)
  resumed = list(input_pipeline.iterate(dataset, state))
  assert len(rest) == len(resumed) == 3
  for a, b in zip(rest, resumed):
    np.testing.assert_array_equal(a["images"], b["images"])


def test_eval_order_is_padded_to_the_batch():
  order = input_pipeline.padded_order(10, 4)
  np.testing.assert_array_equal(order, list(range(10)) + [-1, -1])
  prep = input_pipeline.Preprocessing("none", False, None, None, seed=0)
  batches = list(input_pipeline.batches(_store(10), order, 4, prep))
  assert [b["labels"][-1] for b in batches][-1] == -1
  assert not batches[-1]["images"][-2:].any()


def test_specs_declare_the_grain_fields():
  for spec in specs.SPECS.values():
    assert spec.policy in ("none", "crop_flip", "random_resized_crop")


@pytest.mark.skipif(not os.path.isdir(idx.DEBIAN_FASHION_MNIST_DIR),
                    reason="needs the Debian Fashion-MNIST files")
def test_grain_path_equals_device_path_on_fashion_mnist(tmp_path):
  """The real files, a 600-image subset, cdr_ref: identical epochs."""
  overrides = dict(dataset="fashion_mnist", data_source="idx", model="mlp",
                   mlp_hidden=(64,), num_train_examples=600, method="cdr_ref",
                   batch_size=32, eval_batch_size=100)
  runs = []
  for pipeline in ("device", "grain"):
    config = make_tiny_config(num_epochs=2, input_pipeline=pipeline,
                              **overrides)
    train.train_and_evaluate(config, str(tmp_path / pipeline))
    runs.append(without_times(read_metrics(str(tmp_path / pipeline))))
  assert runs[0] == runs[1]
