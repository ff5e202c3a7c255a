"""Fashion-MNIST, MLP, 4,000 images, constant rate: a regime where CE memorizes.

The paper's gains are over baselines that memorized the noisy labels (its
F-MNIST rows: ResNet-50, 100 epochs; CE at 40% pairflip 76.4). LeNet-5 on the
full 54,000 images barely memorizes within a CPU budget (1-2% of the
mislabeled examples), so early stopping already does CDR's job there. Here a
1.86M-weight MLP sees a seeded, class-balanced subset of 4,000 training
images (3,600 train / 400 noisy validation, the paper's 10%) at the protocol's
SGD with a constant rate for 50 epochs. Measured (seed 0, CE, symmetric 40%):
the test accuracy peaks near epoch 7 and the model then fits the wrong labels
(over 70% of them by epoch 50) while the test accuracy falls by over 15
points; one run takes about a minute on 2 CPU cores.
"""

from experiments.configs import fashion_mnist_mlp


def get_config():
  """Returns the configuration."""
  config = fashion_mnist_mlp.get_config()
  config.num_train_examples = 4000
  config.num_epochs = 50
  # Constant: a decayed rate slows memorization down, and this regime is
  # about what happens when nothing stops it.
  config.lr_milestones = ()
  return config
