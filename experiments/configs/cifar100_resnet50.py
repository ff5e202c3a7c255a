"""CIFAR-100, ResNet-50: the paper's CIFAR setup (a GPU job)."""

from experiments.configs import default


def get_config():
  """Returns the configuration: batch 64, 200 epochs, lr x0.1 at 40 and 80."""
  config = default.get_config()
  config.dataset = "cifar100"
  config.model = "resnet50"
  config.batch_size = 64
  config.num_epochs = 200
  config.lr_milestones = (40, 80)
  config.eval_batch_size = 500
  return config
