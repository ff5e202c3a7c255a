"""Fashion-MNIST, MLP 784-1024-1024-10, 16,000 images, the paper's schedule.

Between the 4,000-image memorization regime and the whole set (the regime
map, experiments/regimes.py): a seeded, class-balanced subset, the
protocol's rate x0.1 from 1-based epochs 10 and 20 (configs/default.py).
"""

from experiments.configs import fashion_mnist_mlp


def get_config():
  """Returns the configuration."""
  config = fashion_mnist_mlp.get_config()
  config.num_train_examples = 16000
  config.num_epochs = 50
  return config
