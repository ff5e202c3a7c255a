"""Default configuration: CDR (reference flavour) on Fashion-MNIST with LeNet-5.

Every field can be overridden on the command line, e.g.
`--config.noise_rate=0.2 --config.method=ce`. The variant configs in this
folder import this one and change the dataset/model-specific fields.
"""

import ml_collections
from ml_collections import config_dict

from experiments import methods


def get_config() -> ml_collections.ConfigDict:
  """Returns the default configuration."""
  config = ml_collections.ConfigDict()

  # Data. `data_source`: "auto", "tfds", "idx" or "npy" (see experiments/data/loading.py);
  # `data_dir` None means the source's default location.
  config.dataset = "fashion_mnist"
  config.data_source = "auto"
  config.data_dir = config_dict.placeholder(str)
  # Noise: symmetric | pairflip | asymmetric | instance, rate in [0, 1).
  config.noise_type = "instance"
  config.noise_rate = 0.4
  # Fraction of the (noisy) training set held out for model selection.
  config.val_fraction = 0.1
  # A seeded, class-balanced subset of this many training examples (before
  # the noise and the split); None = the whole training set.
  config.num_train_examples = config_dict.placeholder(int)

  # Model: lenet5 | mlp | resnet18 | resnet34 | resnet50.
  config.model = "lenet5"
  config.mlp_hidden = (1024, 1024)

  # Method: a name of experiments/methods (REGISTRY). Each method's own
  # hyperparameters are in method_args.<name>, e.g.
  # --config.method_args.cdr_ref.tau=0.3; only the chosen method's are used.
  config.method = "cdr_ref"
  config.method_args = methods.default_args()

  # Optimization: the reference code's SGD for MNIST / F-MNIST (lr 0.01,
  # momentum 0.9, weight decay 1e-3, batch 32; xiaoboxia/CDR main.py).
  config.batch_size = 32
  config.num_epochs = 100
  config.learning_rate = 0.01
  config.momentum = 0.9
  config.weight_decay = 1e-3
  # The learning rate is multiplied by lr_decay from the first step of each
  # of these (1-based) epochs. The reference code builds
  # MultiStepLR(milestones=[10, 20]) (xiaoboxia/CDR main.py l.382-386) but
  # calls scheduler.step() at the start of every epoch (l.420; torch >= 1.1
  # semantics), so its rate drops before 0-based epochs 9 and 19, i.e.
  # 1-based epochs 10 and 20: 9 epochs at 0.01, not 10.
  config.lr_milestones = (10, 20)
  config.lr_decay = 0.1

  # Evaluation batch size (must be divisible by the number of devices).
  config.eval_batch_size = 1000

  # Execution. steps_per_call > 1 runs that many steps in one lax.scan per
  # call; on this CPU the scan slows `lax.conv_general_dilated` down and
  # speeds dense layers (and LeNet-5's matmul convolutions) up (see
  # experiments/benchmarks/training.py), so the variants pick it. It changes
  # how steps are dispatched, not what they compute: a run resumes under
  # another value.
  config.steps_per_call = 1
  # Devices for data parallelism; None = all local devices.
  config.num_devices = config_dict.placeholder(int)
  config.seed = 0
  config.checkpoints_to_keep = 2
  # Stop (as if killed) after this many epochs of this invocation; for
  # testing resumption. None = run to num_epochs.
  config.stop_after_epochs = config_dict.placeholder(int)
  # tqdm progress bar per epoch (only shown on a terminal).
  config.log_progress = True
  return config
