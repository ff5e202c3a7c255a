"""Pretrained starting weights (`config.init_checkpoint`), read from local files.

`models.network(init_checkpoint=PATH)` reads PATH once, at setup, and every
`init` of that network - both networks of a two-network method - starts
from the weights, with a fresh classifier for the dataset's
classes (the last layer: `head`, LeNet-5's `fc3`). PATH is one of:

* a torchvision ResNet state dict (`.pth`, e.g. ImageNet weights for
  `resnet50_imagenet`), read without torch (experiments/torch_pth.py) and
  mapped name by name: `conv1` / `bn1` the stem, `layer<s>.<j>` the blocks
  in order, `downsample.0/1` the projection shortcut; convolution weights
  OIHW -> HWIO; BatchNorm `weight`, `bias`, `running_mean`, `running_var` ->
  `scale`, `bias`, `mean`, `var`; `fc` (the ImageNet classifier) and
  `num_batches_tracked` are not used;
* an orbax checkpoint of one of our runs: its workdir (the newest step of
  `checkpoints/`), one step's folder, or a folder holding a saved
  `NetworkState`. The first network found in the saved state is used (for
  a two-network method, the first of the pair).

Every parameter and BatchNorm statistic other than the classifier must be
in the file with the model's shape, and a state dict may hold nothing else:
anything missing, extra, of another shape, or a file of another kind is one
UserError naming it.
"""

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from experiments import errors
from experiments import torch_pth

_COLLECTIONS = ("params", "batch_stats")
_TORCH_BN = {"scale": "weight", "bias": "bias", "mean": "running_mean",
             "var": "running_var"}
_TORCH_UNUSED = ("fc.weight", "fc.bias")

# A starting point: ("params" | "batch_stats", *path as strings) -> array.
Start = dict[tuple[str, ...], np.ndarray]


def _flat(state) -> dict[tuple, Any]:
  """(collection, *path) -> leaf, for a NetworkState of nested dicts."""
  return {(c, *k): v for c in _COLLECTIONS
          for k, v in traverse_util.flatten_dict(getattr(state, c)).items()}


def _key(path: tuple) -> tuple[str, ...]:
  return tuple(str(p) for p in path)


def _expected(abstract, classifier: str) -> dict[tuple[str, ...], Any]:
  """The model's leaves to load (all but the classifier's), by string key."""
  return {_key(k): v for k, v in _flat(abstract).items()
          if k[1] != classifier}


def _few(items) -> str:
  items = sorted(items)
  return ", ".join(items[:4]) + (f" and {len(items) - 4} more"
                                 if len(items) > 4 else "")


def _torchvision_names(expected) -> dict[tuple[str, ...], str]:
  """Our key -> torchvision's state-dict name, for a ResNet of models.py.

  A stage starts at every block with a projection shortcut (torchvision's
  `downsample`), the first block excepted: it starts `layer1` whether it
  projects (Bottleneck) or not (BasicBlock).
  """
  blocks = sorted({int(k[2]) for k in expected if k[1] == "blocks"})
  projects = {int(k[2]) for k in expected
              if k[1] == "blocks" and k[3] == "shortcut"}
  where, stage, index = {}, 1, 0
  for b in blocks:
    if b in projects and b != blocks[0]:
      stage, index = stage + 1, 0
    where[str(b)] = f"layer{stage}.{index}"
    index += 1
  names = {}
  for k in expected:
    leaf = "weight" if k[-1] == "kernel" else _TORCH_BN[k[-1]]
    if k[1] in ("stem_conv", "stem_bn"):
      module = "conv1" if k[1] == "stem_conv" else "bn1"
    else:  # ("blocks", i, conv1 | bn1 | ... | shortcut, [conv | bn,] leaf)
      layer = k[3] if k[3] != "shortcut" else (
          "downsample.0" if k[4] == "conv" else "downsample.1")
      module = f"{where[k[2]]}.{layer}"
    names[k] = f"{module}.{leaf}"
  return names


def _from_torchvision(path: str, model: str, expected) -> Start:
  if not any(k[1] == "stem_conv" for k in expected):
    raise errors.UserError(
        f"init_checkpoint={path}: a torchvision state dict fits the ResNet "
        f"models (resnet50_imagenet for ImageNet weights), not {model}.")
  state_dict = torch_pth.read(path)
  if isinstance(state_dict, dict) and isinstance(
      state_dict.get("state_dict"), dict):
    state_dict = state_dict["state_dict"]  # A training checkpoint.
  if not isinstance(state_dict, dict):
    raise errors.UserError(
        f"init_checkpoint={path} holds a {type(state_dict).__name__}, not a "
        "state dict.")
  names = _torchvision_names(expected)
  missing = [n for n in names.values() if n not in state_dict]
  if missing:
    raise errors.UserError(
        f"init_checkpoint={path} lacks {len(missing)} of {model}'s weights: "
        f"{_few(missing)}.")
  unused = set(names.values()) | set(_TORCH_UNUSED)
  extra = [n for n in state_dict if n not in unused
           and not n.endswith(".num_batches_tracked")]
  if extra:
    raise errors.UserError(
        f"init_checkpoint={path} holds weights that {model} does not have: "
        f"{_few(extra)} (another architecture?).")
  start = {}
  for k, name in names.items():
    array = np.asarray(state_dict[name])
    start[k] = array.transpose(2, 3, 1, 0) if array.ndim == 4 else array
  return start


def _state_directory(path: str) -> str:
  """The orbax item folder of `path`: a workdir, a step, or the item."""
  runs = os.path.join(path, "checkpoints")
  if os.path.isdir(runs):
    steps = [int(s) for s in os.listdir(runs) if s.isdigit()]
    if not steps:
      raise errors.UserError(
          f"init_checkpoint={path}: {runs} holds no checkpoint.")
    path = os.path.join(runs, str(max(steps)))
  state = os.path.join(path, "state")
  return state if os.path.isdir(state) else path


def _networks(tree) -> list[Start]:
  """Every saved NetworkState in `tree` (as restored without a target), in
  the order of its keys."""
  if not isinstance(tree, (dict, list, tuple)):
    return []
  if isinstance(tree, dict) and all(c in tree for c in _COLLECTIONS):
    return [{_key((c, *k)): v for c in _COLLECTIONS
             for k, v in traverse_util.flatten_dict(tree[c] or {}).items()}]
  children = (tree.values() if isinstance(tree, dict) else tree)
  return [n for child in children for n in _networks(child)]


def _from_orbax(path: str, model: str, expected) -> Start:
  directory = _state_directory(path)
  checkpointer = ocp.PyTreeCheckpointer()
  directory = os.path.abspath(directory)
  not_orbax = errors.UserError(
      f"init_checkpoint={path} is a directory but not an orbax checkpoint (a "
      "run's workdir, one of its steps, or a saved network).")
  try:
    metadata = checkpointer.metadata(directory).item_metadata
  except (FileNotFoundError, ValueError, KeyError) as e:
    raise not_orbax from e
  if metadata is None:
    raise not_orbax
  # As host numpy arrays: the saved shardings need not fit this machine.
  tree = checkpointer.restore(directory, restore_args=jax.tree.map(
      lambda _: ocp.RestoreArgs(restore_type=np.ndarray), metadata.tree))
  networks = _networks(tree)
  if not networks:
    raise errors.UserError(
        f"init_checkpoint={path}: the checkpoint holds no network (no "
        "params / batch_stats pair).")
  start = networks[0]
  missing = [k for k in expected if k not in start]
  if missing:
    raise errors.UserError(
        f"init_checkpoint={path} lacks {len(missing)} of {model}'s weights: "
        f"{_few('/'.join(k) for k in missing)} (another model?).")
  return {k: np.asarray(start[k]) for k in expected}


def load(path: str, model: str, abstract, *, classifier: str) -> Start:
  """Reads and checks the starting weights of `model` in `path`.

  Args:
    path: a torchvision `.pth` state dict or an orbax checkpoint directory.
    model: the model's name (for messages).
    abstract: the model's `NetworkState` of shapes (`jax.ShapeDtypeStruct`).
    classifier: the name of the model's last layer, which is not loaded.

  Returns:
    Every leaf but the classifier's, in the model's layout and dtypes.

  Raises:
    UserError: for a missing or unknown file, a missing or extra weight, or
      a shape that differs from the model's.
  """
  if not os.path.exists(path):
    raise errors.MissingDataError(f"init_checkpoint={path} does not exist.")
  expected = _expected(abstract, classifier)
  if os.path.isdir(path):
    start = _from_orbax(path, model, expected)
  elif path.endswith((".pth", ".pt")):
    start = _from_torchvision(path, model, expected)
  else:
    raise errors.UserError(
        f"init_checkpoint={path}: unknown kind of file (expected a torchvision "
        "state dict, .pth / .pt, or an orbax checkpoint directory).")
  wrong = [f"{'/'.join(k)} {tuple(start[k].shape)} != {tuple(v.shape)}"
           for k, v in expected.items() if start[k].shape != tuple(v.shape)]
  if wrong:
    raise errors.UserError(
        f"init_checkpoint={path} does not fit {model} (shape of "
        f"{_few(wrong)}).")
  return {k: start[k].astype(v.dtype) for k, v in expected.items()}


def starting_from(init: Callable, start: Start) -> Callable:
  """`init` with every leaf that `start` holds replaced by its value."""

  def init_from(key):
    fresh = init(key)
    trees = {}
    for c in _COLLECTIONS:
      flat = traverse_util.flatten_dict(getattr(fresh, c))
      trees[c] = traverse_util.unflatten_dict({
          k: jnp.asarray(start.get(_key((c, *k)), v)) for k, v in flat.items()
      }) if flat else getattr(fresh, c)
    return fresh._replace(**trees)

  return init_from
