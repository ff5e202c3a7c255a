"""Tests for GCE: L_q against NumPy, its CE limit, and the truncated variant."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import methods
from experiments import train
from experiments.methods import gce
from experiments.methods import losses
from conftest import make_tiny_config
from conftest import make_tiny_dataset
from conftest import read_metrics
from conftest import make_context

_RNG = np.random.default_rng(0)
_LOGITS = _RNG.normal(0.0, 2.0, (6, 5)).astype(np.float32)
_LABELS = np.array([0, 3, 4, 1, 1, 2], np.int32)


def _softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _numpy_lq(z, y, q):
  """Per-example (1 - p_y^q) / q and its gradient d/dz, in float64."""
  p = _softmax(z)
  p_y = p[np.arange(len(y)), y]
  onehot = np.eye(z.shape[1])[y]
  # d/dz_j (1 - p_y^q) / q = -p_y^q (delta_jy - p_j).
  return (1 - p_y**q) / q, -(p_y**q)[:, None] * (onehot - p)


def _context(num_epochs=100, **args):
  return make_context(
      "gce", num_epochs=num_epochs, num_classes=5, num_train=6,
      steps_per_epoch=1, noise_rate=0.2, **args,
  )


@pytest.mark.parametrize("q", [0.7, 0.3, 1.0])
def test_lq_values_and_gradients_match_numpy(q):
  value, grad = _numpy_lq(_LOGITS, _LABELS, q)

  def mean_loss(z):
    return jnp.mean(gce.gce_per_example(z, _LABELS, q))

  np.testing.assert_allclose(
      gce.gce_per_example(_LOGITS, _LABELS, q), value, rtol=1e-5
  )
  np.testing.assert_allclose(
      jax.grad(mean_loss)(_LOGITS), grad / len(_LABELS), rtol=1e-4, atol=1e-7
  )


def test_q_to_zero_is_cross_entropy_in_values_and_gradients():
  def ce(z):
    return jnp.mean(losses.cross_entropy(z, _LABELS))

  def lq(z, q):
    return jnp.mean(gce.gce_per_example(z, _LABELS, q))

  for q in (1e-4, 1e-6):
    # (1 - p^q) / q = -log p - q log^2 p / 2 + ...: the error shrinks with q.
    np.testing.assert_allclose(lq(_LOGITS, q), ce(_LOGITS), rtol=10 * q)
    np.testing.assert_allclose(
        jax.grad(lq)(_LOGITS, q), jax.grad(ce)(_LOGITS), rtol=10 * q, atol=1e-7
    )
  # Not trivially equal: at the default q the two differ.
  assert abs(float(lq(_LOGITS, 0.7) - ce(_LOGITS))) > 0.1


def test_lq_is_finite_where_softmax_underflows():
  logits = jnp.array([[0.0, 200.0]])  # p_0 = e^-200 is 0 in float32.
  labels = jnp.array([0])
  value = gce.gce_per_example(logits, labels, 0.7)
  grad = jax.grad(lambda z: gce.gce_per_example(z, labels, 0.7).sum())(logits)
  np.testing.assert_allclose(value, [1 / 0.7], rtol=1e-6)
  assert np.all(np.isfinite(grad))


def test_truncated_loss_is_weighted_shifted_lq():
  q, k = 0.7, 0.5
  weights = np.array([1, 0, 1, 1, 0, 1], np.float32)
  value, grad = _numpy_lq(_LOGITS, _LABELS, q)
  expected = np.mean(weights * (value - (1 - k**q) / q))

  def loss(z):
    return gce.truncated_loss(z, _LABELS, weights, q, k)

  np.testing.assert_allclose(loss(_LOGITS), expected, rtol=1e-5)
  np.testing.assert_allclose(
      jax.grad(loss)(_LOGITS), weights[:, None] * grad / len(_LABELS),
      rtol=1e-4, atol=1e-7,
  )


def test_end_epoch_prunes_p_y_below_k_on_its_schedule():
  method = gce.make(
      _context(truncated=True, k=0.5, prune_start_epoch=40, prune_every=10)
  )
  logits = np.log(np.array(
      [[0.6, 0.4], [0.3, 0.7], [0.49, 0.51], [0.9, 0.1], [0.2, 0.8],
       [0.55, 0.45]], np.float32,
  ))
  labels = np.array([0, 0, 1, 1, 1, 0])
  view = methods.EpochView(labels, lambda state: logits)
  state = gce.TruncatedState(None, jnp.ones(6))
  # The re-implementation re-sets weights before (1-based) epochs 40, 50, ...
  for epoch in (1, 38, 40, 48):
    np.testing.assert_array_equal(method.end_epoch(state, epoch, view).weights, 1)
  kept = np.array([1, 0, 1, 0, 1, 1])  # p_y > 0.5.
  for epoch in (39, 49, 99):
    np.testing.assert_array_equal(method.end_epoch(state, epoch, view).weights, kept)
  # No update after the last epoch: the weights stay those it trained with.
  last = gce.make(_context(num_epochs=99, truncated=True)).end_epoch
  np.testing.assert_array_equal(last(state, 99, view).weights, 1)
  pruned = method.end_epoch(state, 39, view)
  np.testing.assert_array_equal(method.report(pruned)["pruned_ids"], [1, 3])


def test_truncated_run_trains_on_the_kept_examples(tmp_path):
  config = make_tiny_config(
      model="mlp", mlp_hidden=(16,), num_epochs=2, method="gce"
  )
  config.method_args.gce.update(
      truncated=True, prune_start_epoch=2, prune_every=1, k=0.1
  )
  summary = train.train_and_evaluate(config, str(tmp_path), make_tiny_dataset())
  history = read_metrics(str(tmp_path))
  assert history[0]["selected_fraction"] == 1.0  # Nothing pruned yet.
  pruned = np.load(tmp_path / summary["method_report"]["pruned_ids"])
  assert 0 < len(pruned) < 144
  # The report is the weights epoch 2 trained with (no update after the
  # last epoch); its batches cover all but the last partial batch.
  assert history[1]["selected_fraction"] == pytest.approx(
      1 - len(pruned) / 144, abs=0.1
  )


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("q", 0.0, r"q=.*: expected a finite number > 0 and <= 1"),
        ("q", 1.5, r"q=.*: expected a finite number > 0 and <= 1"),
        ("k", 1.0, r"k=1.0: expected a finite number > 0 and < 1"),
        ("prune_every", 0, "prune_every=0: expected an integer >= 1"),
    ],
)
def test_out_of_range_args_are_rejected(field, value, error):
  with pytest.raises(ValueError, match=error):
    _context(**{field: value})
