"""WebVision-mini (the first 50 classes), Inception-ResNet-v2 at 299 px.

Source: Xia et al., "Robust early-learning", ICLR 2021, the WebVision run in
the usual 50-class protocol (Jiang et al., MentorNet, ICML 2018; Chen et
al., ICML 2019): trained on the Google images of the first 50 classes,
tested on WebVision's validation images and, as the paper reports, on the
same 50 classes of ILSVRC12 val (config.imagenet_val_dir): top-1 CE 57.34,
CDR 61.85 (/work/shared/CDR.md). Trained from scratch. tau 0.2: WebVision's
estimated noise (about 20%, Li et al., "WebVision Database", 2017).
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "webvision_mini"
  config.model = "inception_resnet_v2"
  config.input_pipeline = "grain"
  config.dtype = "bfloat16"
  config.noise_type = "real"
  config.noise_rate = 0.0
  config.batch_size = 32
  config.num_epochs = 100
  config.lr_milestones = (40, 80)
  config.eval_batch_size = 250
  for flavour in ("cdr_ref", "cdr_paper"):
    config.method_args[flavour].tau = 0.2
  return config
