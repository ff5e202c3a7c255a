"""MNIST, LeNet-5: the paper's MNIST setup."""

from experiments.configs import default


def get_config():
  """Returns the configuration."""
  config = default.get_config()
  config.dataset = "mnist"
  config.model = "lenet5"
  return config
