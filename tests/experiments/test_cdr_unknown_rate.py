"""CDR with an unknown noise rate: tau estimated after a warm-up."""

import copy

import numpy as np
import pytest

from experiments import train
from experiments.methods import estimation
from conftest import make_tiny_config
from conftest import make_tiny_dataset
from conftest import read_metrics
from conftest import without_times


def test_estimate_tau_from_a_near_perfect_posterior():
  """Symmetric noise, rate 0.3, 4 classes: the noisy posterior of a clean
  example of class i is row i of T, blurred towards uniform by a different
  amount per example (the anchor filter needs distinct values); the anchors
  recover T, hence tau."""
  rate, c = 0.3, 4
  transition = np.full((c, c), rate / (c - 1)) + np.eye(c) * (1 - rate - rate / (c - 1))
  clean = np.repeat(np.arange(c), 250)
  blur = np.tile(np.linspace(0.0, 0.02, 250), c)[:, None]
  logits = np.log((1 - blur) * transition[clean] + blur / c)
  # A balanced noisy prior: tau_hat = 1 - mean_i T_ii.
  labels = clean
  tau = estimation.estimate_rate(logits, labels, "anchor")
  assert tau == pytest.approx(rate, abs=0.01)
  assert estimation.estimate_rate(logits, labels, "cleanlab") != tau


def _config(**args):
  config = make_tiny_config(
      model="mlp", mlp_hidden=(16,), num_epochs=3, method="cdr_ref",
      noise_rate=0.4,
  )
  for key, value in {"tau_source": "anchor", "warmup_epochs": 1, **args}.items():
    config.method_args.cdr_ref[key] = value
  return config


def test_warmup_then_estimated_tau_and_resume(tmp_path):
  dataset = make_tiny_dataset()
  summary = train.train_and_evaluate(_config(), str(tmp_path / "full"), dataset)
  history = read_metrics(str(tmp_path / "full"))
  assert [r["phase"] for r in history] == ["warmup", "train", "train"]
  # The warm-up is the method with tau = 0: every ranked entry is critical.
  assert history[0]["tau"] == 0.0 and history[0]["critical_fraction"] == 1.0
  tau_hat = summary["method_report"]["estimated_tau"]
  assert 0.0 < tau_hat < 1.0
  assert [r["tau"] for r in history[1:]] == pytest.approx([tau_hat] * 2)
  assert history[1]["critical_fraction"] == pytest.approx(1 - tau_hat, abs=0.02)
  assert summary["method_report"]["true_noise_rate"] == 0.4

  # tau is in the checkpointed optimizer state: a resume is bit-identical.
  stopped = copy.deepcopy(_config())
  stopped.stop_after_epochs = 2
  assert train.train_and_evaluate(stopped, str(tmp_path / "r"), dataset) is None
  train.train_and_evaluate(_config(), str(tmp_path / "r"), dataset)
  assert without_times(read_metrics(str(tmp_path / "r"))) == without_times(history)


@pytest.mark.parametrize(
    "args, message",
    [
        ({"tau_source": "guess"}, "tau_source=.*: expected one of"),
        ({"warmup_epochs": 3}, r"warmup_epochs=3 must be in \[1, num_epochs=3\)"),
    ],
)
def test_bad_arguments(tmp_path, args, message):
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(_config(**args), str(tmp_path), make_tiny_dataset())
