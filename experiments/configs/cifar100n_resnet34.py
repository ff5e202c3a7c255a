"""CIFAR-100N, ResNet-34: the CIFAR-N paper's setting.

Source: Wei et al., "Learning with Noisy Labels Revisited: A Study Using
Real-World Human Annotations", ICLR 2022, and its code (UCSC-REAL/
cifar-10-100n): ResNet-34, SGD lr 0.1, momentum 0.9, weight decay 5e-4,
batch 128, 100 epochs with the rate divided by 10 after epoch 60. Its label
field (noise rate from its Table 1): "noisy_label" in its release,
"noise_label" in tfds's cifar100_n (40.20% noise); config.label_field.
tau follows that rate. The CE and CDR accuracies of the
source are not quoted here: CDR is not among its baselines. Our ResNet-34
keeps the reference code's stem (padding 0).
"""

from experiments.configs import cifar10n_resnet34

LABEL_FIELD = "noise_label"


def get_config():
  """CIFAR-10N's setting (same source, same optimizer) on CIFAR-100N."""
  config = cifar10n_resnet34.get_config()
  config.dataset = "cifar100_n"
  config.label_field = LABEL_FIELD
  for flavour in ("cdr_ref", "cdr_paper"):
    config.method_args[flavour].tau = 0.402
  return config
