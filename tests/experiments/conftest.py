"""Fixtures shared by the experiments' tests: tiny datasets and configs."""

import json
import os

import numpy as np
import pytest

from experiments import data
from experiments import methods
from experiments.configs import default

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Fields that differ between two identical runs: wall-clock times.
TIME_FIELDS = ("train_time_s", "epoch_time_s", "images_per_s", "input_wait")


def make_tiny_dataset(n_train=160, n_test=48, shape=(28, 28, 1), seed=0):
  """Random images whose brightness depends on the class (learnable)."""
  rng = np.random.default_rng(seed)
  n = n_train + n_test
  labels = rng.integers(0, 10, n).astype(np.int32)
  images = rng.integers(0, 60, (n, *shape)) + 19 * labels[:, None, None, None]
  images = images.astype(np.uint8)
  return data.Dataset(
      name="mnist",
      num_classes=10,
      train=data.Split(images[:n_train], labels[:n_train]),
      test=data.Split(images[n_train:], labels[n_train:]),
  )


def make_tiny_config(**overrides):
  """A LeNet run of 3 short epochs on `make_tiny_dataset` (symmetric 20%)."""
  config = default.get_config()
  config.dataset = "mnist"
  config.model = "lenet5"
  config.method = "cdr_ref"
  config.noise_type = "symmetric"
  config.noise_rate = 0.2
  config.batch_size = 16
  config.eval_batch_size = 32
  config.num_epochs = 3
  config.lr_milestones = (3,)
  config.log_progress = False
  for key, value in overrides.items():
    config[key] = value
  return config


def make_context(
    method, *, num_epochs=100, network=None, num_classes=10, num_train=100,
    steps_per_epoch=10, lr=0.1, noise_rate=0.4, **args
):
  """A methods.Context for unit tests of one method, with its args set."""
  config = default.get_config()
  config.method = method
  config.num_epochs = num_epochs
  config.noise_rate = noise_rate
  for key, value in args.items():
    config.method_args[method][key] = value
  return methods.Context(
      args=methods.args_of(config),
      config=config,
      network=network,
      num_classes=num_classes,
      num_train=num_train,
      steps_per_epoch=steps_per_epoch,
      learning_rate=lambda step: lr,
      noise_rate=noise_rate, corruption_rate=noise_rate,
  )


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def without_times(records):
  return [{k: v for k, v in r.items() if k not in TIME_FIELDS} for r in records]


def assert_records_close(a, b, rel, abs_):
  """Per-epoch records equal: numbers up to a tolerance, the rest exactly."""
  assert len(a) == len(b)
  for ra, rb in zip(a, b):
    assert ra.keys() == rb.keys()
    for key in ra:
      if isinstance(ra[key], (int, float)) and ra[key] is not None:
        assert ra[key] == pytest.approx(rb[key], rel=rel, abs=abs_), key
      else:
        assert ra[key] == rb[key], key


@pytest.fixture
def tiny_dataset():
  return make_tiny_dataset()


def _fashion_mnist_or_skip():
  try:
    return data.load_dataset("fashion_mnist")
  except FileNotFoundError as e:
    pytest.skip(f"Fashion-MNIST is not installed here ({e}).")


@pytest.fixture(scope="session")
def fashion_mnist():
  """The real Fashion-MNIST (Debian dataset-fashion-mnist), once per session."""
  return _fashion_mnist_or_skip()
