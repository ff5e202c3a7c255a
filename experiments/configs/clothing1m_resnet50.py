"""Clothing1M, ImageNet-pretrained ResNet-50 at 224 px.

Source: the protocol of Patrini et al. ("Making deep neural networks robust
to label noise: a loss correction approach", CVPR 2017), which Co-teaching,
T-Revision and most later Clothing1M papers share: torchvision's ImageNet
ResNet-50 (config.init_checkpoint), the 1M noisy training images, model
selection on the 14k clean validation list, the 10k clean test list, SGD
with momentum 0.9, batch 32, weight decay 1e-3, 10 epochs. The rate here
(8e-3, divided by 10 after 5 epochs) is the one T-Revision's code is
commonly cited with; it was not re-read from the papers in this change, so
check it before quoting. The CDR paper has no Clothing1M run: the source
reports no CDR number. tau 0.385: the noise rate Xiao et al. (CVPR 2015)
estimated on the verified subset (about 38.5%).
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "clothing1m"
  config.model = "resnet50_imagenet"
  config.input_pipeline = "grain"
  config.noise_type = "real"
  config.noise_rate = 0.0
  config.batch_size = 32
  config.num_epochs = 10
  config.learning_rate = 8e-3
  config.lr_milestones = (6,)
  config.eval_batch_size = 256
  for flavour in ("cdr_ref", "cdr_paper"):
    config.method_args[flavour].tau = 0.385
  return config
