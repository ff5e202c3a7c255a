"""Evaluation: predictions on every split, accuracies, memorization, the summary."""

import os
import statistics
from typing import Any, Callable, NamedTuple

import jax
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np

from experiments import atomic
from experiments import distributed
from experiments import run_config
from experiments.data import augment
from experiments.data import DatasetSpec
from experiments.data import NoisyDataset
from experiments.methods import Method


class DeviceSplit(NamedTuple):
  """A split on the devices, padded to a multiple of the evaluation batch.

  Attributes:
    images: uint8 (num_padded, h, w, c); the padding is zeros.
    labels: int32 (num_padded,) noisy (train/val) or clean (test) labels.
    size: number of real examples (a Python int).
  """

  images: jax.Array
  labels: jax.Array
  size: int


def make_predict_fn(
    method: Method, spec: DatasetSpec, batch_size: int, mesh: jax.sharding.Mesh
) -> Callable:
  """Jitted (state, images, start) -> predicted logits of one eval batch."""
  batch_sharding = NamedSharding(mesh, P("data"))

  def predict(state, images, start):
    x = lax.dynamic_slice_in_dim(images, start, batch_size)
    x = lax.with_sharding_constraint(x, batch_sharding)
    return method.predict(state, augment.normalize(x, spec))

  return jax.jit(predict, **distributed.gathered_outputs(mesh))


def predict_split(predict_fn, state, split: DeviceSplit, batch_size: int):
  """Logits of every example of a split, as a numpy array."""
  logits = [
      distributed.in_order(predict_fn(state, split.images, start))
      for start in range(0, split.images.shape[0], batch_size)
  ]
  return np.concatenate(jax.device_get(logits))[: split.size]


def to_device(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    mesh: jax.sharding.Mesh,
) -> DeviceSplit:
  """Pads a split to a multiple of `batch_size` and replicates it on `mesh`."""
  pad = -len(labels) % batch_size
  images = np.pad(images, ((0, pad),) + ((0, 0),) * (images.ndim - 1))
  labels = np.pad(labels, (0, pad))
  images, labels = distributed.replicate((images, labels), mesh)
  return DeviceSplit(images, labels, size=len(labels) - pad)


def accuracy_metrics(
    preds: dict[str, np.ndarray], data: NoisyDataset
) -> dict[str, float | None]:
  """Accuracies and memorization from the predictions on each split.

  Args:
    preds: predicted classes for "train", "val" and "test".
    data: the noisy dataset (noisy and clean labels).

  Returns:
    train_acc / val_acc: accuracy on the noisy labels (what the model was
    fit to / selected on); train_clean_acc / val_clean_acc: on the true
    labels; test_acc: clean test accuracy; memorization: fraction of the
    mislabeled training examples predicted as their wrong (noisy) label;
    mislabeled_correct: fraction of them predicted as their true label.
    The last two are None without mislabeled examples.
  """
  train = preds["train"]
  clean = data.train_clean_labels
  # Real-noise datasets verify only some labels: negative codes are unknown
  # (-1) or known wrong without the right class (-2, a mislabeled example).
  flipped = (data.train_labels != clean) & (clean != -1)
  named = flipped & (clean >= 0)
  mean = lambda x: float(np.mean(x)) if x.size else None
  val_known = data.val_clean_labels >= 0
  metrics = {
      "train_acc": mean(train == data.train_labels),
      "train_clean_acc": mean(train[clean >= 0] == clean[clean >= 0]),
      "memorization": mean(train[flipped] == data.train_labels[flipped]),
      "mislabeled_correct": mean(train[named] == clean[named]),
      "val_acc": mean(preds["val"] == data.val_labels),
      "val_clean_acc": mean(
          preds["val"][val_known] == data.val_clean_labels[val_known]),
      "test_acc": mean(preds["test"] == data.test_labels),
  }
  for name, (_, labels) in data.extra_tests.items():
    metrics[f"{name}_acc"] = mean(preds[name] == labels)
  return metrics


def summarize(
    config: ml_collections.ConfigDict,
    history: list[dict[str, Any]],
    data: NoisyDataset,
    num_devices: int,
    warmup_phases: tuple[str, ...] = (),
    batch_sizes: dict[str, int] | None = None,
) -> dict[str, Any]:
  """The run's result from its per-epoch metrics (the paper's protocol).

  The best epoch is the first epoch of highest noisy-validation accuracy
  among the method's own epochs - those after its warm-up phases (the
  phases that hand over their best state), whose models are not the
  method's; the reported number is the test accuracy at that epoch. Each
  warm-up phase's own best epoch is reported under ``warmups``, so that a
  reader sees what the method's phase added.
  """
  own = [r for r in history if r["phase"] not in warmup_phases]
  best = max(own, key=lambda r: r["val_acc"])  # max keeps the first.
  warmups = {}
  for phase in warmup_phases:
    records = [r for r in history if r["phase"] == phase]
    if records:
      top = max(records, key=lambda r: r["val_acc"])
      warmups[phase] = {"best_epoch": top["epoch"], "val_acc": top["val_acc"],
                        "test_acc": top["test_acc"]}
  epoch_times = [r["epoch_time_s"] for r in history]
  return {
      "config": run_config.as_dict(config),
      "dataset": data.name,
      "model": config.model,
      "method": config.method,
      "noise_type": config.noise_type,
      "noise_rate": config.noise_rate,
      "seed": config.seed,
      "realized_noise_rate": data.realized_rate,
      # Which set selected the reported epoch (real-noise datasets may
      # select on their clean validation list).
      "selected_on": data.selected_on,
      # The small-loss methods' oracle forget rate (methods.Context).
      "corruption_rate": data.corruption_rate,
      "batch_sizes": batch_sizes or {"train": config.batch_size},
      "num_train": len(data.train_labels),
      "num_val": len(data.val_labels),
      "num_test": len(data.test_labels),
      "epochs": len(history),
      "best_epoch": best["epoch"],
      "best_val_acc": best["val_acc"],
      "test_acc_at_best_val": best["test_acc"],
      "warmups": warmups,
      "last_test_acc": history[-1]["test_acc"],
      "max_test_acc": max(r["test_acc"] for r in history),
      "last_memorization": history[-1]["memorization"],
      # The first epoch of each process includes compilation: the median is
      # the steady-state cost.
      "seconds_per_epoch_median": statistics.median(epoch_times),
      "seconds_per_epoch_mean": statistics.fmean(epoch_times),
      "num_devices": num_devices,
      "platform": jax.default_backend(),
  }


def epoch_line(record: dict[str, Any], num_epochs: int) -> str:
  """One rounded line per epoch, for logs and terminals alike."""
  parts = [f"epoch {record['epoch']}/{num_epochs}"]
  if record["phase"] != "train":
    parts[0] += f" ({record['phase']})"
  for key, name in (
      ("train_loss", "loss"), ("train_acc", "train"), ("val_acc", "val"),
      ("test_acc", "test"), ("memorization", "memorized"),
      ("critical_fraction", "critical"), ("label_precision", "precision"),
  ):
    if record.get(key) is not None:
      parts.append(f"{name} {record[key]:.4f}")
  parts.append(f"{record['epoch_time_s']:.1f} s")
  if record.get("input_wait"):
    parts.append(f"{record['images_per_s']:.0f} img/s, input wait "
                 f"{record['input_wait']:.0%}")
  return ", ".join(parts)


def write_report(workdir: str, report: dict[str, Any]) -> dict[str, Any]:
  """Saves the method's arrays as .npy files; returns the JSON-able report."""
  jsonable = {}
  for key, value in report.items():
    if isinstance(value, np.ndarray):
      path = os.path.join(workdir, f"{key}.npy")
      atomic.write_npy(path, value)
      jsonable[key] = f"{key}.npy"
    else:
      jsonable[key] = value
  return jsonable
