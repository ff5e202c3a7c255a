"""Fashion-MNIST, MLP 784-1024-1024-10, all 60,000 images, constant rate.

The regime map's (experiments/regimes.py) full-data cell without the
paper's decay: what memorization does on the whole set when nothing slows
it down.
"""

from experiments.configs import fashion_mnist_mlp


def get_config():
  """Returns the configuration."""
  config = fashion_mnist_mlp.get_config()
  config.num_epochs = 50
  config.lr_milestones = ()
  return config
