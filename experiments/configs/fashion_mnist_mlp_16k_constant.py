"""Fashion-MNIST, MLP, 16,000 images, constant rate (the regime map)."""

from experiments.configs import fashion_mnist_mlp_16k


def get_config():
  """Returns the configuration."""
  config = fashion_mnist_mlp_16k.get_config()
  config.lr_milestones = ()
  return config
