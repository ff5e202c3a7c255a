"""The paper's own rows (Xia et al. 2021, section 4 and ../shared/CDR.md):
configs that follow its protocol, run end to end on tfds mock data."""

import os

import pytest
import tensorflow_datasets as tfds

from experiments import grid
from experiments import run_config
from experiments import train
from experiments.data import specs

# config -> (dataset, model, epochs, batch size, train-time augmentation).
PAPER_PROTOCOL = {
    "mnist_lenet": ("mnist", "lenet5", 100, 32, False),
    "fashion_mnist_resnet50": ("fashion_mnist", "resnet50", 100, 32, False),
    "cifar10_resnet50": ("cifar10", "resnet50", 200, 64, True),
    "cifar100_resnet50": ("cifar100", "resnet50", 200, 64, True),
}


@pytest.mark.parametrize("name", sorted(PAPER_PROTOCOL))
def test_paper_configs_follow_the_paper(name):
  config = grid.load_config(name)
  dataset, model, epochs, batch_size, augment = PAPER_PROTOCOL[name]
  assert (config.dataset, config.model) == (dataset, model)
  assert (config.num_epochs, config.batch_size) == (epochs, batch_size)
  assert (config.learning_rate, config.momentum) == (0.01, 0.9)
  assert config.val_fraction == 0.1 and config.num_train_examples is None
  spec = specs.get_spec(dataset)
  assert spec.augment == augment  # random crop (padding 4) + horizontal flip
  run_config.validate(config)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAPER_PROTOCOL))
def test_paper_configs_run_end_to_end_on_mock_data(name, tmp_path):
  config = grid.load_config(name)
  config.data_source = "tfds"
  config.num_epochs = 1
  config.lr_milestones = ()
  config.eval_batch_size = 50
  config.noise_type = "pairflip"
  config.method = "cdr_ref"
  examples = 2 * config.batch_size + 20
  with tfds.testing.mock_data(num_examples=examples):
    summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["model"] == config.model and summary["epochs"] == 1
  assert summary["num_train"] + summary["num_val"] == examples
  assert os.path.exists(tmp_path / "metrics.jsonl")
