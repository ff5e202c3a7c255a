"""CIFAR-10N, ResNet-34: the CIFAR-N paper's setting.

Source: Wei et al., "Learning with Noisy Labels Revisited: A Study Using
Real-World Human Annotations", ICLR 2022, and its code (UCSC-REAL/
cifar-10-100n): ResNet-34, SGD lr 0.1, momentum 0.9, weight decay 5e-4,
batch 128, 100 epochs with the rate divided by 10 after epoch 60. Its label
fields (tfds's cifar10_n names) and their noise rates (its Table 1) are
NOISE_RATES; `get_config(field)` trains on one, with CDR's tau at its rate
(the oracle rate, as the paper's synthetic runs), e.g.
`--config=experiments/configs/cifar10n_resnet34.py:worse_label`. The CE and CDR accuracies
of the source are not quoted here: CDR is not among its baselines. Our
ResNet-34 keeps the reference code's stem (padding 0).
"""

from experiments.configs import default

NOISE_RATES = {
    "aggre_label": 0.0903,
    "random_label1": 0.1723,
    "random_label2": 0.1812,
    "random_label3": 0.1764,
    "worse_label": 0.4021,
}
LABEL_FIELD = "aggre_label"


def get_config(label_field: str = LABEL_FIELD):
  config = default.get_config()
  config.dataset = "cifar10_n"
  config.model = "resnet34"
  config.input_pipeline = "grain"
  config.label_field = label_field
  config.noise_type = "real"  # The human labels, as they are.
  config.noise_rate = 0.0
  config.batch_size = 128
  config.num_epochs = 100
  config.learning_rate = 0.1
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.lr_milestones = (61,)
  config.eval_batch_size = 500
  for flavour in ("cdr_ref", "cdr_paper"):
    config.method_args[flavour].tau = NOISE_RATES[label_field]
  return config
