"""Fashion-MNIST, MLP, 4,000 images, the paper's schedule (the regime map).

The memorization regime (fashion_mnist_mlp_memorize) with the protocol's
rate x0.1 from 1-based epochs 10 and 20 instead of a constant rate.
"""

from experiments.configs import fashion_mnist_mlp_memorize


def get_config():
  """Returns the configuration."""
  config = fashion_mnist_mlp_memorize.get_config()
  config.lr_milestones = (10, 20)
  return config
