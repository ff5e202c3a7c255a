"""Default configuration: CDR (reference flavour) on Fashion-MNIST with LeNet-5.

Every field can be overridden on the command line, e.g.
`--config.noise_rate=0.2 --config.method=ce`. The variant configs in this
folder import this one and change the dataset/model-specific fields.
"""

import ml_collections

from experiments import methods
from experiments import models
from experiments import schema
from experiments.data import loading
from experiments.data import noise

# Every field: its default and what it accepts (experiments/schema.py). The
# method's own hyperparameters are in method_args.<name>, declared by each
# method module the same way. A field added later says `backfill=True` when
# its default is what runs saved before it did (they then resume; without
# the flag they are refused with one line naming the field).
FIELDS = {
    # Data. `data_source`: see experiments/data/loading.py; `data_dir` None
    # means the source's default location. The dataset name is checked by
    # experiments/data/specs.py (it accepts spellings like "Fashion-MNIST").
    "dataset": schema.Str("fashion_mnist"),
    "data_source": schema.Str("auto", loading.SOURCES),
    "data_dir": schema.Str(None, optional=True),
    # tfds datasets with human labels: the feature training labels come
    # from (cifar10_n: aggre_label, random_label1..3, worse_label;
    # cifar100_n: noise_label; experiments/data/tfds_source.py), with
    # noise_type="real"; the ground truth `label` then only measures
    # memorization. None = `label`, the dataset's clean label.
    "label_field": schema.Str(None, optional=True, backfill=True),
    # Noise: symmetric | pairflip | asymmetric | instance | none.
    # "real": the labels a real-noise release ships (the folder datasets of
    # experiments/data/folders.py; tfds food101 and the label_field of
    # cifar10_n / cifar100_n), no synthetic noise, noise_rate 0.
    "noise_type": schema.Str(
        "instance", (*noise.NOISE_TYPES, noise.CLEAN, noise.REAL)),
    "noise_rate": schema.Real(0.4, 0.0, 1.0, high_open=True),
    # Fraction of the (noisy) training set held out for model selection.
    "val_fraction": schema.Real(0.1, 0.0, 1.0, low_open=True, high_open=True),
    # A seeded, class-balanced subset of this many training examples (before
    # the noise and the split); None = the whole training set.
    "num_train_examples": schema.Int(None, 2, optional=True, backfill=True),
    # How batches reach the step (experiments/feeds.py): "device" puts the
    # whole uint8 training split on the devices and gathers each batch in
    # the compiled step (MNIST / F-MNIST / CIFAR); "grain" streams it from
    # host memory or disk through grain, decoding and augmenting in
    # `num_workers` processes (0: in the training process). Both give the
    # same batches in the same order; augmentation differs (on device vs in
    # the workers).
    "input_pipeline": schema.Str("device", ("device", "grain"), backfill=True),
    "num_workers": schema.Int(0, 0, 256, backfill=True),
    # Square train crop and eval crop in pixels for the folder datasets,
    # overriding the dataset's (eval resize scales with it); None = the
    # dataset's own sizes (experiments/data/specs.py).
    "image_size": schema.Int(None, 8, 1024, optional=True, backfill=True),
    # Grain path: also checkpoint (state, the epoch's running sums and the
    # data iterator) every this many steps, so that a run killed mid-epoch
    # resumes at the same batch. None = at epoch ends only.
    "checkpoint_every_steps": schema.Int(None, 1, optional=True,
                                           backfill=True),
    # A corrupt image met in training stops the run naming the file; with
    # True it is replaced by the next decodable example of the epoch's order
    # and counted in the summary.
    "skip_corrupt_images": schema.Bool(False, backfill=True),
    # WebVision: an ILSVRC12 validation folder with its label file, for the
    # paper's number (its first 50 classes); None = not evaluated.
    "imagenet_val_dir": schema.Str(None, optional=True, backfill=True),
    # Food-101N: the Food-101 release folder its test split comes from;
    # None = food-101/ inside or beside data_dir.
    "food101_dir": schema.Str(None, optional=True, backfill=True),
    # Folder datasets: draw num_train_examples class-balanced (the
    # Clothing1M literature's subsets, e.g. DivideMix) instead of uniformly.
    "balanced_subset": schema.Bool(False, backfill=True),
    # Model: lenet5 | mlp | resnet18 | resnet34 | resnet50 (CIFAR stem) |
    # resnet50_imagenet | inception_resnet_v2 (experiments/models.py).
    "model": schema.Str("lenet5", models.MODELS),
    "mlp_hidden": schema.Ints((1024, 1024), 1, min_len=1),
    # Compute dtype of the model's layers; parameters, optimizer state, CDR's
    # scores, BatchNorm statistics, logits and losses stay float32.
    "dtype": schema.Str("float32", models.DTYPES, backfill=True),
    # Start from these weights instead of a random initialization: a
    # torchvision ResNet state dict (.pth) or an orbax checkpoint of one of
    # our runs (experiments/pretrained.py); the classifier starts afresh.
    "init_checkpoint": schema.Str(None, optional=True, backfill=True),
    # Method: a name of experiments/methods (REGISTRY); its arguments are
    # method_args.<name>, e.g. --config.method_args.cdr_ref.tau=0.3.
    "method": schema.Str("cdr_ref", lambda: tuple(methods.REGISTRY)),
    # Optimization: the reference code's SGD for MNIST / F-MNIST (lr 0.01,
    # momentum 0.9, weight decay 1e-3, batch 32; xiaoboxia/CDR main.py).
    "batch_size": schema.Int(32, 1),
    "num_epochs": schema.Int(100, 1),
    "learning_rate": schema.Real(0.01, 0.0, low_open=True),
    "momentum": schema.Real(0.9, 0.0, 1.0, high_open=True),
    "weight_decay": schema.Real(1e-3, 0.0),
    # The learning rate is multiplied by lr_decay from the first step of each
    # of these (1-based) epochs. The reference code builds
    # MultiStepLR(milestones=[10, 20]) (xiaoboxia/CDR main.py l.382-386) but
    # calls scheduler.step() at the start of every epoch (l.420; torch >= 1.1
    # semantics), so its rate drops before 0-based epochs 9 and 19, i.e.
    # 1-based epochs 10 and 20: 9 epochs at 0.01, not 10.
    "lr_milestones": schema.Ints((10, 20), 1, increasing=True),
    "lr_decay": schema.Real(0.1, 0.0, low_open=True),
    # Evaluation batch size (must be divisible by the number of devices).
    "eval_batch_size": schema.Int(1000, 1),
    # Execution. steps_per_call > 1 runs that many steps in one lax.scan per
    # call; on this CPU the scan slows `lax.conv_general_dilated` down and
    # speeds dense layers (and LeNet-5's matmul convolutions) up (see
    # experiments/benchmarks/training.py), so the variants pick it. It
    # changes how steps are dispatched, not what they compute: a run resumes
    # under another value.
    "steps_per_call": schema.Int(1, 1),
    # Devices for data parallelism; None = all local devices.
    "num_devices": schema.Int(None, 1, optional=True),
    # jax.random.key takes a uint32.
    "seed": schema.Int(0, 0, 2**32 - 1),
    "checkpoints_to_keep": schema.Int(2, 1),
    # Stop (as if killed) after this many epochs of this invocation; for
    # testing resumption. None = run to num_epochs.
    "stop_after_epochs": schema.Int(None, 0, optional=True),
    # tqdm progress bar per epoch (only shown on a terminal).
    "log_progress": schema.Bool(True),
}


def get_config() -> ml_collections.ConfigDict:
  """Returns the default configuration."""
  config = schema.defaults(FIELDS)
  config.method_args = methods.default_args()
  return config
