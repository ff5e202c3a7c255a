"""Tests for S2E: the schedule family, its Co-teaching step and the search."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from experiments import methods
from experiments import s2e_search
from experiments.methods import s2e
from conftest import make_context

C = 3


def _context(num_epochs=20, network=None, noise_rate=0.4, **args):
  return make_context(
      "s2e", num_epochs=num_epochs, network=network, num_classes=C,
      num_train=20, steps_per_epoch=2, noise_rate=noise_rate, **args,
  )


def _random_params(rng):
  params = rng.uniform(size=12) * s2e.PARAM_UPPER
  params[8] = max(params[8], 1e-3)
  return params


def _official_forget_rate(th, t, n_epoch):
  """heng_main.py L238-242 for one epoch, in plain math."""
  return (
      th[0] * (1 - math.exp(-th[2] * t ** th[1]))
      + (1 - th[0]) * th[7] * (1 - 1 / (th[4] * t + 1) ** th[3])
      + (1 - th[0]) * (1 - th[7])
      * (1 - math.log(1 + th[8]) / math.log(1 + th[8] + th[9] * t))
      - (t / n_epoch) ** th[5] * th[6]
      - math.log(1 + t ** th[11]) / math.log(1 + n_epoch ** th[11]) * th[10]
  )


def test_schedule_is_the_official_family_capped_and_floored():
  rng = np.random.default_rng(0)
  num_epochs = 30
  for _ in range(20):
    th = _random_params(rng)
    rates = s2e.remember_rates(th, num_epochs)
    # Epoch i (0-based) is the official t = i + 1 with n_epoch = T + 1.
    expected = [
        1 - min(max(_official_forget_rate(th, i + 1, num_epochs + 1), 0), 0.99)
        for i in range(num_epochs)
    ]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    assert np.all((rates >= 0.01 - 1e-12) & (rates <= 1.0))


def test_rising_curves_give_a_falling_remember_rate():
  """Without the falling terms (th6 = th10 = 0) f rises, so R never rises."""
  rng = np.random.default_rng(1)
  for _ in range(50):
    th = _random_params(rng)
    th[6] = th[10] = 0.0
    assert np.all(np.diff(s2e.remember_rates(th, 100)) <= 1e-12)
  # With a falling term, R may rise again late in training.
  th = np.array([0.5, 1, 0.5, 1, 0.5, 2, 0.5, 1, 0.5, 0.25, 0, 1])
  rates = s2e.remember_rates(th, 100)
  assert rates[-1] > rates.min() + 0.1


def test_default_schedule_is_the_coteaching_like_ramp():
  ctx = _context(num_epochs=20, noise_rate=0.4)
  t = np.arange(1, 21)
  np.testing.assert_allclose(
      s2e.remember_rates(s2e.schedule_params(ctx), 20),
      1 - 0.4 * (1 - np.exp(-0.2 * t)), rtol=1e-12,
  )
  ctx = _context(forget_rate=0.2)
  assert s2e.schedule_params(ctx)[0] == 0.2
  params = tuple(np.linspace(0.1, 0.4, 12))
  assert s2e.schedule_params(_context(params=params)) == params


@pytest.mark.parametrize(
    "params, error",
    [
        ((0.5,) * 11, "params=.*exactly 12 elements"),
        ((0.5, 0.5, 0.6) + (0.1,) * 9, r"params\[2\] = 0.6 is outside \[0, 0.5\]"),
        ((0.5,) * 5 + (-0.1,) + (0.1,) * 6, r"params=.*each a finite number >= 0"),
        ((0.1,) * 8 + (0.0,) + (0.1,) * 3, r"params\[8\] must be > 0"),
    ],
)
def test_out_of_range_params_are_rejected(params, error):
  with pytest.raises(ValueError, match=error):
    _context(params=params)


def _linear_network():
  def init(key):
    w = jax.random.normal(key, (2, C))
    return methods.NetworkState({"w": w, "b": jnp.zeros(C)}, {})

  def apply(params, batch_stats, images, *, train):
    del train
    return images @ params["w"] + params["b"], batch_stats

  return methods.Network(init, apply)


def test_each_network_learns_its_peers_small_loss_fraction():
  num_epochs, batch_size = 6, 10
  params = (0.6, 1.0, 0.5, 0.3, 0.4, 1.0, 0.2, 0.5, 0.5, 0.3, 0.1, 1.0)
  ctx = _context(num_epochs, _linear_network(), params=params)
  method = s2e.make(ctx)
  state = method.init(jax.random.key(0))
  rng = np.random.default_rng(2)
  images = jnp.float32(rng.normal(size=(batch_size, 2)))
  labels = jnp.asarray(rng.integers(0, C, batch_size), jnp.int32)
  batch = methods.Batch(images, labels, jnp.arange(batch_size))
  step = jax.jit(method.train_step)
  rates = s2e.remember_rates(params, num_epochs)
  keeps = [int(r * batch_size) or batch_size for r in rates]
  assert len(set(keeps)) > 1  # The schedule changes the selection.
  for epoch in range(num_epochs):
    info = methods.StepInfo(jnp.int32(epoch * 2), jnp.int32(epoch))
    net2 = state.learners[1].net.params
    loss2 = -np.asarray(jax.nn.log_softmax(images @ net2["w"] + net2["b"]))[
        np.arange(batch_size), labels
    ]
    state, metrics = step(state, batch, info)
    expected = np.zeros(batch_size, bool)
    expected[np.argsort(loss2, kind="stable")[: keeps[epoch]]] = True
    np.testing.assert_array_equal(metrics["selected"], expected)
    np.testing.assert_allclose(metrics["remember_rate"], rates[epoch], rtol=1e-6)
  report = method.report(state)
  assert report["schedule_params"] == list(params)
  np.testing.assert_allclose(report["remember_rates"], rates)


# ---------------------------------------------------------------------------
# The search's update, against finite differences of scipy's Beta log-pdf
# ---------------------------------------------------------------------------


def _log_p(hyper, x):
  return sum(
      stats.beta.logpdf(x[k], hyper[2 * k], hyper[2 * k + 1])
      for k in range(len(x))
  )


def _central_difference(f, x, eps):
  """Rows d f / d x_i of a scalar or vector function f."""
  rows = []
  for i in range(x.size):
    up, down = x.copy(), x.copy()
    up[i] += eps
    down[i] -= eps
    rows.append((np.asarray(f(up)) - np.asarray(f(down))) / (2 * eps))
  return np.array(rows)


def _fd_score(hyper, x):
  return _central_difference(lambda h: _log_p(h, x), hyper, 1e-5)


def _fd_hessian(hyper, x):
  return _central_difference(lambda h: _fd_score(h, x), hyper, 1e-4)


_HYPER = np.array([1.0, 1.0, 2.0, 1.5, 3.0, 1.2])
_SAMPLES = np.array([[0.2, 0.7, 0.4], [0.9, 0.3, 0.6], [0.5, 0.5, 0.8]])
_SCORES = np.array([0.61, 0.74, 0.58])


def test_beta_score_and_hessian_match_finite_differences():
  x = _SAMPLES[0]
  np.testing.assert_allclose(
      s2e_search.beta_score(_HYPER, x), _fd_score(_HYPER, x), rtol=1e-5, atol=1e-7
  )
  np.testing.assert_allclose(
      s2e_search.beta_log_hessian(_HYPER), _fd_hessian(_HYPER, x),
      rtol=1e-3, atol=1e-4,
  )


def test_official_step_moves_towards_the_best_sample_as_the_code():
  n, delta = len(_SCORES), 0.5
  g = _fd_score(_HYPER, _SAMPLES[1])  # Sample 1 scores best.
  hessian = (np.outer(g, g) + _fd_hessian(_HYPER, _SAMPLES[1])) / n
  u, s, vh = np.linalg.svd(hessian)
  inverse = np.linalg.inv(u @ np.diag(np.maximum(s, 1e-5)) @ vh)
  # numpy's `hessian * hypgrad` with hypgrad (2K, 1), then column 0.
  step = np.array([delta * inverse[i, 0] * g[i] / n for i in range(g.size)])
  expected = np.maximum(_HYPER + step, 1.0)
  result = s2e_search.official_step(_HYPER, _SAMPLES, _SCORES, delta)
  np.testing.assert_allclose(result, expected, rtol=1e-3, atol=1e-5)
  assert np.all(result >= 1.0) and not np.allclose(result, _HYPER)


def test_natural_step_is_the_inverse_fisher_times_the_gradient():
  delta = 0.3
  advantages = _SCORES - _SCORES.mean()
  grad = sum(a * _fd_score(_HYPER, x) for a, x in zip(advantages, _SAMPLES)) / 3
  fisher = -_fd_hessian(_HYPER, _SAMPLES[0])
  expected = np.maximum(_HYPER + delta * np.linalg.inv(fisher) @ grad, 1.0)
  result = s2e_search.natural_step(_HYPER, _SAMPLES, _SCORES, delta)
  np.testing.assert_allclose(result, expected, rtol=1e-3, atol=1e-5)
  assert not np.allclose(result, _HYPER)


def test_natural_gradient_search_climbs_a_toy_objective():
  """Score = -|x - target|^2 on the Beta samples: the means move to target."""
  target = np.full(12, 0.8)

  def objective(params, iteration, sample):
    del iteration, sample
    return -np.sum((params / s2e.PARAM_UPPER - target) ** 2)

  result = s2e_search.search(
      objective, n_iter=30, n_samples=6, rng=np.random.default_rng(0),
      delta=1.0, update="natural",
  )
  hyper = np.array(result["hyper"])
  means = hyper[0::2] / (hyper[0::2] + hyper[1::2])
  assert np.mean(means) > 0.6  # Started at 0.5 (Beta(1, 1)).
  assert len(result["samples"]) == 180
  assert result["best"]["score"] == max(r["score"] for r in result["samples"])


def test_search_one_iteration_is_draw_score_update():
  def objective(params, iteration, sample):
    return float(params[0] - params[5]) + 0.01 * sample

  result = s2e_search.search(
      objective, n_iter=1, n_samples=4, rng=np.random.default_rng(7),
      update="official",
  )
  samples = np.clip(
      np.random.default_rng(7).beta(np.ones(12), np.ones(12), size=(4, 12)),
      1e-9, 1 - 1e-9,
  )
  params = samples * s2e.PARAM_UPPER
  scores = params[:, 0] - params[:, 5] + 0.01 * np.arange(4)
  np.testing.assert_allclose(
      [r["params"] for r in result["samples"]], params, rtol=1e-12
  )
  np.testing.assert_allclose(
      result["hyper"],
      s2e_search.official_step(np.ones(24), samples, scores, 1.0),
  )
  assert result["best"]["params"] == params[np.argmax(scores)].tolist()
