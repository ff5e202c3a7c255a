"""MNIST, LeNet-5: the paper's MNIST setup."""

from experiments.configs import default


def get_config():
  """Returns the configuration."""
  config = default.get_config()
  config.dataset = "mnist"
  config.model = "lenet5"
  # With its convolutions as matmuls (models.LENET_CONV), LeNet-5 runs ~1.5x
  # faster inside lax.scan than one step per call on CPU
  # (experiments/benchmarks/training.py).
  config.steps_per_call = 100
  return config
