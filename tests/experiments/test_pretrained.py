"""Tests for pretrained starts: torch's .pth format read without torch
(experiments/torch_pth.py), torchvision's ResNet-50 names mapped onto
resnet50_imagenet, our own orbax checkpoints, and the one-line errors
(experiments/pretrained.py)."""

import zipfile

import jax
import ml_dtypes
import numpy as np
import pytest

import torch_pth_writer
from conftest import make_tiny_config
from experiments import checkpoints
from experiments import errors
from experiments import models
from experiments import pretrained
from experiments import torch_pth
from experiments import train

# torchvision's resnet50: Bottleneck stages of 3, 4, 6, 3 blocks, widths 64
# to 512, expansion 4 (torchvision/models/resnet.py).
_STAGES = ((3, 64), (4, 128), (6, 256), (3, 512))


def _torchvision_resnet50(rng, num_classes=1000):
  """A state dict with torchvision's ResNet-50 names, shapes and dtypes."""
  state = {}

  def conv(name, out, inp, k):
    state[f"{name}.weight"] = rng.standard_normal((out, inp, k, k), np.float32)

  def bn(name, c):
    for leaf in ("weight", "bias", "running_mean", "running_var"):
      state[f"{name}.{leaf}"] = rng.standard_normal(c, np.float32)
    state[f"{name}.num_batches_tracked"] = np.array(1000, np.int64)

  conv("conv1", 64, 3, 7)
  bn("bn1", 64)
  inplanes = 64
  for layer, (blocks, planes) in enumerate(_STAGES, 1):
    for j in range(blocks):
      p = f"layer{layer}.{j}"
      conv(f"{p}.conv1", planes, inplanes, 1)
      bn(f"{p}.bn1", planes)
      conv(f"{p}.conv2", planes, planes, 3)
      bn(f"{p}.bn2", planes)
      conv(f"{p}.conv3", 4 * planes, planes, 1)
      bn(f"{p}.bn3", 4 * planes)
      if j == 0:
        conv(f"{p}.downsample.0", 4 * planes, inplanes, 1)
        bn(f"{p}.downsample.1", 4 * planes)
      inplanes = 4 * planes
  state["fc.weight"] = rng.standard_normal((num_classes, 2048), np.float32)
  state["fc.bias"] = rng.standard_normal(num_classes, np.float32)
  return state


def _ours(name: str) -> tuple[str, ...]:
  """Our (collection, *path) of torchvision's `name`, written out by hand."""
  *module, leaf = name.split(".")
  collection, leaf = {
      "weight": ("params", "kernel" if "conv" in name or "downsample.0" in name
                 else "scale"),
      "bias": ("params", "bias"),
      "running_mean": ("batch_stats", "mean"),
      "running_var": ("batch_stats", "var"),
  }[leaf]
  if module[0] in ("conv1", "bn1"):
    return (collection, {"conv1": "stem_conv", "bn1": "stem_bn"}[module[0]],
            leaf)
  layer, j = int(module[0][len("layer"):]), int(module[1])
  block = sum(blocks for blocks, _ in _STAGES[:layer - 1]) + j
  rest = {"downsample": ("shortcut", "conv" if module[-1] == "0" else "bn")}
  return (collection, "blocks", str(block),
          *rest.get(module[2], (module[2],)), leaf)


@pytest.fixture(scope="module")
def resnet50_pth(tmp_path_factory):
  state = _torchvision_resnet50(np.random.default_rng(0))
  path = tmp_path_factory.mktemp("pth") / "resnet50.pth"
  torch_pth_writer.save(state, str(path), archive_name="resnet50-synthetic")
  return state, str(path)


@pytest.fixture(scope="module")
def resnet50_abstract():
  net = models.network("resnet50_imagenet", input_shape=(224, 224, 3),
                       num_classes=101)
  return jax.eval_shape(net.init, jax.random.key(0))


def _load(path, abstract, model="resnet50_imagenet"):
  return pretrained.load(path, model, abstract, classifier="head")


def test_pth_round_trip(tmp_path):
  rng = np.random.default_rng(1)
  arrays = {
      "conv.weight": rng.standard_normal((4, 3, 3, 3), np.float32),
      "bn.num_batches_tracked": np.array(7, np.int64),
      "double": rng.standard_normal(5),
      "half": rng.standard_normal((2, 3)).astype(np.float16),
      "bf16": rng.standard_normal((2, 3)).astype(ml_dtypes.bfloat16),
      "mask": np.array([[True, False]]),
      "empty": np.zeros((0, 3), np.float32),
  }
  path = str(tmp_path / "a.pth")
  torch_pth_writer.save(arrays, path)
  with zipfile.ZipFile(path) as archive:
    for info in archive.infolist():  # torch's reader can map the records.
      assert (info.header_offset + 30 + len(info.filename) +
              len(info.extra)) % 64 == 0
  back = torch_pth.read(path)
  assert list(back) == list(arrays)
  for name, array in arrays.items():
    assert back[name].dtype == array.dtype
    np.testing.assert_array_equal(back[name], array)


def test_pth_reader_runs_no_code(tmp_path):
  path = str(tmp_path / "evil.pth")
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("evil/data.pkl",
                     b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueR.")
  with pytest.raises(errors.UserError, match="os.system"):
    torch_pth.read(path)


def test_torchvision_resnet50_maps_key_by_key(resnet50_pth,
                                              resnet50_abstract):
  state, path = resnet50_pth
  # The synthetic dict has torchvision's size: 25,557,032 parameters.
  assert sum(v.size for k, v in state.items()
             if "running" not in k and "num_batches" not in k) == 25_557_032
  start = _load(path, resnet50_abstract)
  used = [k for k in state if not k.startswith("fc.")
          and not k.endswith("num_batches_tracked")]
  assert set(start) == {_ours(k) for k in used}
  for name in used:
    expected = state[name]
    if expected.ndim == 4:  # OIHW -> HWIO.
      expected = expected.transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(start[_ours(name)], expected)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("layer3.2.bn1.running_var"),
     "lacks 1 of resnet50_imagenet's weights: layer3.2.bn1.running_var"),
    (lambda s: s.update({"conv1.weight": np.zeros((64, 4, 7, 7), np.float32)}),
     r"does not fit resnet50_imagenet \(shape of params/stem_conv/kernel "
     r"\(7, 7, 4, 64\) != \(7, 7, 3, 64\)"),
    (lambda s: s.update({"layer4.3.conv1.weight": np.zeros((1,), np.float32)}),
     "holds weights that resnet50_imagenet does not have: "
     "layer4.3.conv1.weight"),
])
def test_a_state_dict_that_does_not_fit_is_one_error(
    edit, message, resnet50_pth, resnet50_abstract, tmp_path):
  state = dict(resnet50_pth[0])
  edit(state)
  path = str(tmp_path / "edited.pth")
  torch_pth_writer.save(state, path)
  with pytest.raises(errors.UserError, match=message):
    _load(path, resnet50_abstract)


def test_unreadable_sources_are_one_error(resnet50_abstract, tmp_path):
  with pytest.raises(errors.MissingDataError, match="does not exist"):
    _load(str(tmp_path / "nothing.pth"), resnet50_abstract)
  other = tmp_path / "weights.npz"
  other.write_bytes(b"PK")
  with pytest.raises(errors.UserError, match="unknown kind of file"):
    _load(str(other), resnet50_abstract)
  legacy = tmp_path / "legacy.pth"
  legacy.write_bytes(b"\x80\x02\x8a\x0a")
  with pytest.raises(errors.UserError, match="not a PyTorch zip archive"):
    _load(str(legacy), resnet50_abstract)
  with pytest.raises(errors.UserError, match="not an orbax checkpoint"):
    _load(str(tmp_path), resnet50_abstract)


def test_pth_fits_resnets_only(resnet50_pth):
  with pytest.raises(errors.UserError, match="fits the ResNet models"):
    models.network("lenet5", input_shape=(28, 28, 1), num_classes=10,
                   init_checkpoint=resnet50_pth[1])


def _build(config, num_classes=10):
  return train.build_method(
      config, image_shape=(28, 28, 1), num_classes=num_classes, num_train=64,
      steps_per_epoch=4, corruption_rate=0.2)


def test_every_network_starts_from_our_checkpoint(tmp_path):
  # A CE run's LeNet (seed 7) saved as the loop saves it.
  config = make_tiny_config(method="ce", seed=7)
  _, saved = _build(config)
  with checkpoints.manager(str(tmp_path), 2) as manager:
    checkpoints.save(manager, 3, saved, [], config)
    manager.wait_until_finished()
  saved_params = saved.method.net.params
  # Co-teaching's two networks both start from it, each with its own
  # classifier (LeNet's fc3) for the run's classes.
  _, loop = _build(make_tiny_config(method="coteaching",
                                    init_checkpoint=str(tmp_path)))
  nets = [learner.net for learner in loop.method.learners]
  assert len(nets) == 2
  for net in nets:
    for layer in ("conv1", "conv2", "fc1", "fc2"):
      for leaf in saved_params[layer]:
        np.testing.assert_array_equal(net.params[layer][leaf],
                                      saved_params[layer][leaf])
  assert not np.array_equal(nets[0].params["fc3"]["kernel"],
                            nets[1].params["fc3"]["kernel"])
  assert not np.array_equal(nets[0].params["fc3"]["kernel"],
                            saved_params["fc3"]["kernel"])


def test_another_model_checkpoint_is_one_error_at_setup(tmp_path):
  config = make_tiny_config(method="ce", model="mlp", mlp_hidden=(16,))
  _, saved = _build(config)
  with checkpoints.manager(str(tmp_path), 2) as manager:
    checkpoints.save(manager, 1, saved, [], config)
    manager.wait_until_finished()
  with pytest.raises(errors.UserError, match="lacks 8 of lenet5's weights"):
    _build(make_tiny_config(init_checkpoint=str(tmp_path)))
