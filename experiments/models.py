"""Networks for the CDR experiments (Flax NNX).

* `LeNet5`: the paper's MNIST model (conv6-5x5-pad2, pool, conv16-5x5, pool,
  fc120, fc84, fc10, ReLU); 61,706 parameters on 28x28x1 inputs.
* `MLP`: a wide fully connected net (784-1024-1024-10 by default, 1.86M
  parameters). It costs about a LeNet step on CPU but, unlike LeNet, it can
  memorize noisy labels, which is what CDR is meant to hinder.
* `ResNet` 18/34/50: CIFAR-style (3x3 stride-1 stem with padding 0 as the
  reference code, no max-pool) with
  BatchNorm, for 32x32 colour and 28x28 grayscale inputs.

Every model maps float images (N, H, W, C) to logits (N, num_classes) and takes
`train`: BatchNorm uses batch statistics and updates its running averages when
`train` is True, and uses the running averages otherwise. Passing the mode per
call (rather than `model.train()`/`model.eval()`, which change static
attributes) keeps one graph definition for training and evaluation.

Weights and biases are initialized as PyTorch's defaults (uniform with bound
1/sqrt(fan_in)), as in the reference code (its resnet.py has no custom
initialization), so that the early-learning dynamics
are comparable.
"""

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from experiments import inception_resnet_v2
from experiments import pretrained
from experiments import torch_layers
from experiments.matmul_conv import conv_as_matmul

_linear = torch_layers.linear
_conv = torch_layers.conv
_batch_norm = torch_layers.batch_norm


def _max_pool2(x: jax.Array) -> jax.Array:
  """2x2 max-pool, stride 2, dropping an odd last row/column (as torch).

  A reshape + max: on XLA:CPU this made the LeNet-5 training step ~13% faster
  than `reduce_window` (`nnx.max_pool`), whose gradient is a slow
  select-and-scatter.
  """
  n, h, w, c = x.shape
  x = x[:, : h // 2 * 2, : w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


# LeNet-5's convolutions, as patches times a matrix: the same function as
# `lax.conv_general_dilated` up to float reassociation, and the one that lets
# several runs share a program (`experiments/benchmarks/many_runs.py` times
# both).
LENET_CONV = conv_as_matmul


class LeNet5(nnx.Module):
  """LeNet-5 as in the CDR paper's MNIST experiments."""

  def __init__(
      self,
      input_shape: Sequence[int] = (28, 28, 1),
      num_classes: int = 10,
      *,
      rngs: nnx.Rngs,
  ):
    height, width, channels = input_shape
    self.conv1 = _conv(channels, 6, 5, rngs, padding=2, impl=LENET_CONV)
    self.conv2 = _conv(6, 16, 5, rngs, impl=LENET_CONV)
    # conv1 keeps the size, each pool halves it, conv2 (valid) removes 4.
    flat = 16 * ((height // 2 - 4) // 2) * ((width // 2 - 4) // 2)
    self.fc1 = _linear(flat, 120, rngs)
    self.fc2 = _linear(120, 84, rngs)
    self.fc3 = _linear(84, num_classes, rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    del train  # No train/eval difference (no BatchNorm, no dropout).
    x = _max_pool2(nnx.relu(self.conv1(x)))
    x = _max_pool2(nnx.relu(self.conv2(x)))
    x = x.reshape(x.shape[0], -1)
    x = nnx.relu(self.fc1(x))
    x = nnx.relu(self.fc2(x))
    return self.fc3(x)


class MLP(nnx.Module):
  """A fully connected ReLU network on flattened images."""

  def __init__(
      self,
      input_shape: Sequence[int] = (28, 28, 1),
      num_classes: int = 10,
      hidden: Sequence[int] = (1024, 1024),
      *,
      rngs: nnx.Rngs,
  ):
    sizes = [math.prod(input_shape), *hidden]
    self.hidden = nnx.List(
        [_linear(a, b, rngs) for a, b in zip(sizes[:-1], sizes[1:])]
    )
    self.head = _linear(sizes[-1], num_classes, rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    del train
    x = x.reshape(x.shape[0], -1)
    for layer in self.hidden:
      x = nnx.relu(layer(x))
    return self.head(x)


class _Shortcut(nnx.Module):
  """Identity, or a 1x1 strided projection + BatchNorm when the shape changes."""

  def __init__(self, in_features, out_features, stride, rngs):
    self.project = stride != 1 or in_features != out_features
    if self.project:
      self.conv = _conv(
          in_features, out_features, 1, rngs, stride=stride, use_bias=False
      )
      self.bn = _batch_norm(out_features, rngs)

  def __call__(self, x, *, train):
    if not self.project:
      return x
    return self.bn(self.conv(x), use_running_average=not train)


class BasicBlock(nnx.Module):
  """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

  expansion = 1

  def __init__(self, in_features, features, stride, rngs):
    self.conv1 = _conv(
        in_features, features, 3, rngs, stride=stride, padding=1, use_bias=False
    )
    self.bn1 = _batch_norm(features, rngs)
    self.conv2 = _conv(features, features, 3, rngs, padding=1, use_bias=False)
    self.bn2 = _batch_norm(features, rngs)
    self.shortcut = _Shortcut(in_features, features, stride, rngs)

  def __call__(self, x, *, train):
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
    y = self.bn2(self.conv2(y), use_running_average=not train)
    return nnx.relu(y + self.shortcut(x, train=train))


class Bottleneck(nnx.Module):
  """1x1 reduce, 3x3 (strided), 1x1 expand x4, with a residual (ResNet-50)."""

  expansion = 4

  def __init__(self, in_features, features, stride, rngs):
    out_features = features * self.expansion
    self.conv1 = _conv(in_features, features, 1, rngs, use_bias=False)
    self.bn1 = _batch_norm(features, rngs)
    self.conv2 = _conv(
        features, features, 3, rngs, stride=stride, padding=1, use_bias=False
    )
    self.bn2 = _batch_norm(features, rngs)
    self.conv3 = _conv(features, out_features, 1, rngs, use_bias=False)
    self.bn3 = _batch_norm(out_features, rngs)
    self.shortcut = _Shortcut(in_features, out_features, stride, rngs)

  def __call__(self, x, *, train):
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
    y = nnx.relu(self.bn2(self.conv2(y), use_running_average=not train))
    y = self.bn3(self.conv3(y), use_running_average=not train)
    return nnx.relu(y + self.shortcut(x, train=train))


class ResNet(nnx.Module):
  """ResNet: a stem, then four stages (64..512 features) of `block`.

  The stem is CIFAR-style (3x3, stride 1, no max-pool) by default; with
  `imagenet_stem` it is torchvision's (7x7 stride 2, then a 3x3 stride-2
  max-pool) and the network is initialized as torchvision's.
  """

  def __init__(
      self,
      block: type[BasicBlock] | type[Bottleneck],
      stage_sizes: Sequence[int],
      input_shape: Sequence[int] = (32, 32, 3),
      num_classes: int = 10,
      *,
      imagenet_stem: bool = False,
      rngs: nnx.Rngs,
  ):
    self.imagenet_stem = imagenet_stem
    if imagenet_stem:
      self.stem_conv = _conv(input_shape[-1], 64, 7, rngs, stride=2,
                             padding=3, use_bias=False)
    else:
      # Padding 0, as the reference code's first conv (xiaoboxia/CDR
      # resnet.py l.69, commit 6665a8b; 28x28 -> 26x26, 32x32 -> 30x30); the
      # usual CIFAR ResNet pads by 1.
      self.stem_conv = _conv(input_shape[-1], 64, 3, rngs, use_bias=False)
    self.stem_bn = _batch_norm(64, rngs)
    blocks = []
    in_features = 64
    for stage, num_blocks in enumerate(stage_sizes):
      features = 64 * 2**stage
      for i in range(num_blocks):
        stride = 2 if stage > 0 and i == 0 else 1
        blocks.append(block(in_features, features, stride, rngs))
        in_features = features * block.expansion
    self.blocks = nnx.List(blocks)
    self.head = _linear(in_features, num_classes, rngs)
    if imagenet_stem:
      # torchvision resnet.py: kaiming_normal_(mode="fan_out",
      # nonlinearity="relu") for every conv (BatchNorm 1 and 0, the Linear
      # torch's default, as here).
      init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
      for _, module in nnx.iter_modules(self):
        if isinstance(module, nnx.Conv):
          module.kernel[...] = init(rngs.params(), module.kernel[...].shape)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = nnx.relu(self.stem_bn(self.stem_conv(x), use_running_average=not train))
    if self.imagenet_stem:
      # torch's MaxPool2d(3, 2, padding=1) pads with -inf.
      x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for block in self.blocks:
      x = block(x, train=train)
    return self.head(jnp.mean(x, axis=(1, 2)))


_RESNETS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}
# At ImageNet resolutions: torchvision's ResNet-50 (224 px) and
# Inception-ResNet-v2 (299 px).
_IMAGENET_MODELS = ("resnet50_imagenet", "inception_resnet_v2")
MODELS = ("lenet5", "mlp", *_RESNETS, *_IMAGENET_MODELS)
# Each model's last layer, which a pretrained start re-initializes: `head`
# but for LeNet-5's `fc3`.
_CLASSIFIERS = {"lenet5": "fc3"}
# Compute dtypes (`network`'s `dtype`): bfloat16 for accelerators' matrix
# units; on CPU it runs, slowly.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def create_model(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    rngs: nnx.Rngs,
    mlp_hidden: Sequence[int] = (1024, 1024),
) -> nnx.Module:
  """Builds a model by name.

  Args:
    name: one of `MODELS`.
    input_shape: (height, width, channels) of one image.
    num_classes: number of outputs.
    rngs: initialization randomness.
    mlp_hidden: hidden layer widths of "mlp" (ignored by the others).

  Returns:
    The initialized model.

  Raises:
    ValueError: for an unknown name.
  """
  if name == "lenet5":
    return LeNet5(input_shape, num_classes, rngs=rngs)
  if name == "mlp":
    return MLP(input_shape, num_classes, tuple(mlp_hidden), rngs=rngs)
  if name in _RESNETS:
    block, stage_sizes = _RESNETS[name]
    return ResNet(block, stage_sizes, input_shape, num_classes, rngs=rngs)
  if name == "resnet50_imagenet":
    block, stage_sizes = _RESNETS["resnet50"]
    return ResNet(block, stage_sizes, input_shape, num_classes,
                  imagenet_stem=True, rngs=rngs)
  if name == "inception_resnet_v2":
    return inception_resnet_v2.InceptionResNetV2(
        input_shape, num_classes, rngs=rngs)
  raise ValueError(f"Unknown model {name!r}; expected one of {MODELS}.")


class NetworkState(NamedTuple):
  """Trainable parameters and BatchNorm statistics of one network."""

  params: Any
  batch_stats: Any


class Network(NamedTuple):
  """A model, as pure functions.

  Attributes:
    init: ``key -> NetworkState``, a fresh initialization.
    apply: ``(params, batch_stats, images, *, train) -> (logits,
      batch_stats)``; with ``train`` BatchNorm uses and updates batch
      statistics.
  """

  init: Callable[[jax.Array], NetworkState]
  apply: Callable[..., tuple[jax.Array, Any]]


def network(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    mlp_hidden: Sequence[int] = (1024, 1024),
    dtype: str = "float32",
    init_checkpoint: str | None = None,
) -> Network:
  """The model `name` as pure functions over plain nested-dict parameters.

  Parameters and BatchNorm statistics are plain dicts, so optax, orbax and
  `jax.tree` treat them as ordinary pytrees, and a method can hold any
  number of networks in its state.

  Args:
    name: one of `MODELS`.
    input_shape: (height, width, channels) of one image.
    num_classes: number of outputs.
    mlp_hidden: hidden layer widths of "mlp".
    dtype: one of `DTYPES`, the layers' compute dtype. Parameters and
      BatchNorm statistics are float32 whatever it is (so are the gradients,
      the optimizer state and CDR's scores), and so are the logits.
    init_checkpoint: a file or directory of pretrained weights
      (experiments/pretrained.py): every `init` starts from them, the
      classifier excepted. Read and checked here, before any training.

  Returns:
    The network's init and apply functions.

  Raises:
    UserError: if `init_checkpoint` cannot be read or does not fit the model.
  """
  def build(key):
    model = create_model(
        name,
        input_shape=input_shape,
        num_classes=num_classes,
        rngs=nnx.Rngs(params=key),
        mlp_hidden=mlp_hidden,
    )
    if dtype != "float32":
      # The layers cast their inputs and float32 parameters to `dtype`;
      # BatchNorm still reduces in float32 (force_float32_reductions).
      model.set_attributes(nnx.Conv, nnx.Linear, nnx.BatchNorm,
                           dtype=DTYPES[dtype])
    return model

  graphdef, abstract_params, abstract_stats = nnx.split(
      nnx.eval_shape(lambda: build(jax.random.key(0))), nnx.Param, nnx.BatchStat
  )

  def init(key: jax.Array) -> NetworkState:
    _, params, batch_stats = nnx.split(build(key), nnx.Param, nnx.BatchStat)
    return NetworkState(nnx.to_pure_dict(params), nnx.to_pure_dict(batch_stats))

  if init_checkpoint is not None:
    init = pretrained.starting_from(init, pretrained.load(
        init_checkpoint, name,
        NetworkState(nnx.to_pure_dict(abstract_params),
                     nnx.to_pure_dict(abstract_stats)),
        classifier=_CLASSIFIERS.get(name, "head")))

  def apply(params, batch_stats, images, *, train: bool):
    model = nnx.merge(graphdef, params, batch_stats)
    logits = model(images, train=train)
    return (logits.astype(jnp.float32),
            nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))

  return Network(init=init, apply=apply)
