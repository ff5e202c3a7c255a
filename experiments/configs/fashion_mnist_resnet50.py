"""Fashion-MNIST, ResNet-50: the paper's F-MNIST setup (a GPU job)."""

from experiments.configs import default


def get_config():
  """Returns the configuration."""
  config = default.get_config()
  config.dataset = "fashion_mnist"
  config.model = "resnet50"
  config.eval_batch_size = 500
  return config
