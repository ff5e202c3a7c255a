"""Every baseline on equal footing: what a method may see, and where its
reported epoch comes from."""

import os

import jax
import numpy as np
import pytest

from experiments import data
from experiments import methods
from experiments import models
from experiments import train
from experiments.methods import forward
from conftest import make_context
from conftest import make_tiny_config
from conftest import make_tiny_dataset
from conftest import read_metrics

# What the loop measures against the clean labels or the test set: they may
# differ between the two worlds; everything a method trains on may not.
_MEASURED = {
    "test_acc", "train_clean_acc", "val_clean_acc", "memorization",
    "mislabeled_correct", "label_precision", "train_time_s", "epoch_time_s",
    "images_per_s", "input_wait",
}
# The tiny dataset's 144 training examples cannot hold DMI's 256 batch.
_ARGS = {"dmi": {"batch_size": 32, "ce_epochs": 1}}


def _noisy_world(seed: int, other_truth: bool) -> data.Dataset:
  """Fixed noisy labels; the truth (which of them are wrong) and the test
  set differ between the two worlds, with as many wrong labels in each."""
  tiny = make_tiny_dataset()
  rng = np.random.default_rng(seed)
  clean = tiny.train.labels
  noisy = np.where(rng.random(clean.shape) < 0.3, (clean + 1) % 10, clean)
  noisy = noisy.astype(np.int32)
  test = tiny.test
  if other_truth:
    # Swap "wrong" and "right" between pairs of examples: the flipped set
    # moves, its size (the oracle corruption rate) stays.
    wrong = np.flatnonzero(noisy != clean)
    right = rng.permutation(np.flatnonzero(noisy == clean))[: len(wrong)]
    clean = clean.copy()
    clean[wrong] = noisy[wrong]
    clean[right] = (noisy[right] + 3) % 10
    order = rng.permutation(len(test.labels))
    test = data.Split(test.images[order][::-1].copy(), rng.permutation(test.labels))
  return data.Dataset(
      tiny.name, tiny.num_classes, data.Split(tiny.train.images, noisy, clean),
      test,
  )


@pytest.mark.parametrize("method", sorted(methods.REGISTRY))
def test_nothing_a_method_trains_on_depends_on_the_truth(method, tmp_path):
  """Other clean labels and another test set: the same training trajectory."""
  config = make_tiny_config(
      model="mlp", mlp_hidden=(16,), num_epochs=2, method=method,
      noise_type="none", noise_rate=0.0,
  )
  config.method_args[method].update(_ARGS.get(method, {}))
  histories = []
  for other_truth in (False, True):
    workdir = os.path.join(str(tmp_path), str(other_truth))
    summary = train.train_and_evaluate(
        config, workdir, _noisy_world(0, other_truth)
    )
    histories.append([
        {k: v for k, v in r.items() if k not in _MEASURED}
        for r in read_metrics(workdir)
    ])
  assert histories[0] == histories[1]
  assert summary["corruption_rate"] > 0.2


@pytest.mark.parametrize(
    "method, args, warmup",
    [("dmi", {"ce_epochs": 2, "batch_size": 32}, "ce"),
     ("forward", {"warmup_epochs": 2}, "warmup"),
     ("t_revision", {"warmup_epochs": 1, "revision_epochs": 1}, "reweight")],
)
def test_a_warmup_method_reports_an_epoch_of_its_own_phase(
    method, args, warmup, tmp_path
):
  config = make_tiny_config(
      model="mlp", mlp_hidden=(16,), num_epochs=4, method=method
  )
  config.method_args[method].update(args)
  summary = train.train_and_evaluate(config, str(tmp_path), make_tiny_dataset())
  history = {r["epoch"]: r for r in read_metrics(str(tmp_path))}
  own = [e for e, r in history.items() if r["phase"] in ("train", "forward", "revision")]
  assert summary["best_epoch"] in own
  assert warmup in summary["warmups"]
  assert history[summary["warmups"][warmup]["best_epoch"]]["phase"] == warmup


def test_dmi_continues_from_the_best_ce_epoch(tmp_path):
  """With a zero DMI rate, the first DMI epoch evaluates the handed-over
  model: the CE epoch of best noisy-validation accuracy, not the last."""
  config = make_tiny_config(
      model="mlp", mlp_hidden=(16,), num_epochs=5, method="dmi",
      learning_rate=0.3,  # a noisy CE phase, so that its best is not its last
  )
  config.method_args.dmi.update(
      {"ce_epochs": 4, "batch_size": 32, "learning_rate": 0.0,
       "weight_decay": 0.0}
  )
  summary = train.train_and_evaluate(config, str(tmp_path), make_tiny_dataset())
  history = read_metrics(str(tmp_path))
  ce = history[:4]
  best = max(ce, key=lambda r: r["val_acc"])
  assert summary["warmups"]["ce"]["best_epoch"] == best["epoch"]
  for key in ("val_acc", "test_acc", "train_acc"):
    assert history[4][key] == best[key], key
  assert summary["best_epoch"] == 5


def test_forward_trains_a_fresh_network_on_the_estimated_t():
  """Patrini et al.: T from the warm-up model, then a new network."""
  ctx = make_context("forward", network=_mlp(), num_epochs=10)
  method = forward.make(ctx)
  state = method.init(jax.random.key(0))
  view = methods.EpochView(
      train_labels=np.arange(100, dtype=np.int32) % 10,
      predict_train=lambda s: np.eye(10, dtype=np.float32)[
          np.arange(100) % 10] * 5.0,
  )
  after = method.phases[0].on_end(state, view)
  fresh = ctx.network.init(
      jax.random.fold_in(jax.random.key(ctx.config.seed), forward.FRESH_NET_STREAM)
  )
  for a, b in zip(jax.tree.leaves(after.model.net.params),
                  jax.tree.leaves(fresh.params)):
    np.testing.assert_array_equal(a, b)
  assert not all(
      np.array_equal(a, b) for a, b in zip(
          jax.tree.leaves(after.model.net.params),
          jax.tree.leaves(state.model.net.params))
  )
  np.testing.assert_array_equal(
      after.estimate.transition,
      forward._estimate_from(ctx, state, view).transition,
  )


def _mlp():
  return models.network("mlp", input_shape=(28, 28, 1), num_classes=10,
                        mlp_hidden=(8,))
