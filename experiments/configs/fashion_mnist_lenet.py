"""Fashion-MNIST, LeNet-5: the CPU-sized version of the paper's F-MNIST setup."""

from experiments.configs import default


def get_config():
  """Returns the configuration (the defaults)."""
  config = default.get_config()
  config.dataset = "fashion_mnist"
  config.model = "lenet5"
  return config
