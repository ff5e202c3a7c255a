"""Fashion-MNIST, MLP 784-1024-1024-10: a model that can memorize noisy labels."""

from experiments.configs import default


def get_config():
  """Returns the configuration."""
  config = default.get_config()
  config.dataset = "fashion_mnist"
  config.model = "mlp"
  config.steps_per_call = 100  # Dense layers run faster inside lax.scan here.
  return config
