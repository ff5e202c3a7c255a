"""Tests for T-Revision: its weights, its two losses, its stages and estimate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import train
from experiments.data import noise
from experiments.methods import t_revision
from conftest import make_tiny_config
from conftest import make_tiny_dataset
from conftest import read_metrics
from test_forward import make_context

_LOGITS = np.array([[2.0, -1.0, 0.5], [0.1, 0.3, -2.0], [-1.0, 4.0, 1.0]])
_LABELS = np.array([0, 2, 1])
_T = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.0, 0.7]])


def _numpy_terms(logits, labels, transition):
  """p, beta_i = p_iy / sum_j p_ij T_jy, and CE_i, in float64."""
  exp = np.exp(logits - logits.max(axis=1, keepdims=True))
  p = exp / exp.sum(axis=1, keepdims=True)
  rows = np.arange(len(labels))
  noisy = np.array([p[i] @ transition[:, labels[i]] for i in rows])
  return p, p[rows, labels] / noisy, -np.log(p[rows, labels]), noisy


def test_importance_weights_are_p_y_over_t_transpose_p_y():
  _, beta, _, _ = _numpy_terms(_LOGITS, _LABELS, _T)
  np.testing.assert_allclose(
      t_revision.importance_weights(
          jnp.asarray(_LOGITS), jnp.asarray(_LABELS), jnp.asarray(_T)
      ),
      beta, rtol=1e-6,
  )


def test_reweighting_loss_treats_the_weights_as_constants():
  p, beta, ce, _ = _numpy_terms(_LOGITS, _LABELS, _T)
  loss = lambda z: t_revision._reweighting_loss(
      jnp.asarray(_T), z, jnp.asarray(_LABELS), None
  )
  np.testing.assert_allclose(loss(jnp.asarray(_LOGITS)), np.mean(beta * ce),
                             rtol=1e-6)
  # d/dz mean(beta * CE) with beta fixed: beta_i (p_i - onehot(y_i)) / B.
  expected = beta[:, None] * (p - np.eye(3)[_LABELS]) / len(_LABELS)
  np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(_LOGITS)), expected,
                             atol=1e-6)


def test_revision_loss_teaches_delta_t_through_the_weights():
  delta = 0.01 * np.arange(9.0).reshape(3, 3)
  p, beta, ce, noisy = _numpy_terms(_LOGITS, _LABELS, _T + delta)

  def loss(d):
    weights = t_revision.importance_weights(
        jnp.asarray(_LOGITS), jnp.asarray(_LABELS), jnp.asarray(_T) + d
    )
    return t_revision.weighted_cross_entropy(
        jnp.asarray(_LOGITS), jnp.asarray(_LABELS), weights
    )

  np.testing.assert_allclose(loss(jnp.asarray(delta)), np.mean(beta * ce),
                             rtol=1e-6)
  # d beta_i / d Delta_jk = -p_iy p_ij / q_i^2 where k = y_i, else 0.
  expected = np.zeros((3, 3))
  for i, y in enumerate(_LABELS):
    expected[:, y] -= ce[i] * p[i, y] * p[i] / noisy[i] ** 2 / len(_LABELS)
  np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(delta)), expected,
                             atol=1e-6)


@pytest.mark.parametrize(
    "num_epochs, args, expected",
    [
        (100, {}, (10, 45, 45)),
        (200, {}, (20, 90, 90)),
        (2, {}, (1, 0, 1)),
        (3, {}, (1, 1, 1)),
        (10, {"warmup_epochs": 2, "revision_epochs": 3}, (2, 5, 3)),
    ],
)
def test_stages_split_the_run(num_epochs, args, expected):
  ctx = make_context("t_revision", num_epochs=num_epochs, **args)
  assert t_revision.stage_epochs(ctx.args, num_epochs) == expected
  method = t_revision.make(ctx)
  assert [(p.name, p.num_epochs) for p in method.phases] == list(
      zip(("warmup", "reweight", "revision"), expected)
  )


def test_bad_stages_and_args_are_rejected():
  with pytest.raises(ValueError, match="exceed num_epochs=5"):
    t_revision.make(make_context("t_revision", num_epochs=5, revision_epochs=5))
  with pytest.raises(ValueError, match="revision_learning_rate=-1.0: expected a finite number >= 0"):
    make_context("t_revision", revision_learning_rate=-1.0)


def test_initial_state_has_a_zero_slack_and_an_identity_placeholder():
  method = t_revision.make(make_context("t_revision"))
  state = method.init(jax.random.key(0))
  np.testing.assert_array_equal(state.delta, np.zeros((10, 10)))
  np.testing.assert_array_equal(state.estimate.transition, np.eye(10))


def test_three_stages_and_the_estimate(tmp_path):
  config = make_tiny_config(
      model="mlp", mlp_hidden=(16,), num_epochs=3, method="t_revision"
  )
  summary = train.train_and_evaluate(config, str(tmp_path), make_tiny_dataset())
  history = read_metrics(str(tmp_path))
  assert [r["phase"] for r in history] == ["warmup", "reweight", "revision"]
  # Adam moves Delta T by about its rate (5e-7) per step.
  assert 0.0 < history[2]["delta_abs_max"] < 1e-4
  assert [r["learning_rate"] for r in history] == pytest.approx([0.01, 0.01, 5e-7])
  report = summary["method_report"]
  transition = np.load(tmp_path / "transition.npy")
  revised = np.load(tmp_path / "revised_transition.npy")
  assert not np.allclose(transition, np.eye(10))
  assert 0.0 < np.max(np.abs(revised - transition)) < 1e-4
  true = noise.transition_matrix("symmetric", 0.2, 10)
  assert report["revised_max_abs_error"] == pytest.approx(
      np.max(np.abs(revised - true)), rel=1e-5
  )
  assert 0.0 <= report["noise_rate_hat"] <= 1.0
