"""CIFAR-100, ResNet-50: the paper's CIFAR setup (a GPU job)."""

from experiments.configs import cifar10_resnet50


def get_config():
  """Returns the configuration: CIFAR-10's, on CIFAR-100."""
  config = cifar10_resnet50.get_config()
  config.dataset = "cifar100"
  return config
