"""Tests for APL: NCE and RCE against NumPy, their ranges and symmetry."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import methods
from experiments.configs import default
from experiments.methods import apl

A = math.log(1e-4)  # RCE's log 0, natural log as in the official code.
_RNG = np.random.default_rng(1)
_LOGITS = _RNG.normal(0.0, 1.5, (8, 6)).astype(np.float32)
_LABELS = np.array([0, 5, 2, 2, 1, 4, 3, 0], np.int32)


def _softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _numpy_nce(z, y):
  """log p_y / sum_k log p_k and its gradient d/dz, in float64."""
  p = _softmax(z)
  log_p = np.log(p)
  a, b = log_p[np.arange(len(y)), y], log_p.sum(-1)
  da = np.eye(z.shape[1])[y] - p  # d log p_y / dz.
  db = 1.0 - z.shape[1] * p  # d sum_k log p_k / dz.
  return a / b, (da * b[:, None] - a[:, None] * db) / (b**2)[:, None]


def _numpy_rce(z, y):
  """-A (1 - p_y) and its gradient A p_y (onehot - p); no clipping active."""
  p = _softmax(z)
  p_y = p[np.arange(len(y)), y]
  return -A * (1 - p_y), A * p_y[:, None] * (np.eye(z.shape[1])[y] - p)


def _config(dataset="mnist", **args):
  config = default.get_config()
  config.method = "apl"
  config.dataset = dataset
  for key, value in args.items():
    config.method_args.apl[key] = value
  return config


def _context(dataset="mnist", lr=0.1, **args):
  config = _config(dataset, **args)
  return methods.Context(
      args=methods.args_of(config), config=config, network=None,
      num_classes=10, num_train=100, steps_per_epoch=10,
      learning_rate=lambda step: lr, noise_rate=0.2, corruption_rate=0.2,
  )


def test_nce_and_rce_values_and_gradients_match_numpy():
  assert _softmax(_LOGITS).min() > 1e-7  # RCE's clip is inactive here.
  for loss, reference in (
      (apl.normalized_cross_entropy, _numpy_nce),
      (apl.reverse_cross_entropy, _numpy_rce),
  ):
    value, grad = reference(_LOGITS, _LABELS)
    np.testing.assert_allclose(loss(_LOGITS, _LABELS), value, rtol=1e-5)
    np.testing.assert_allclose(
        jax.grad(lambda z: jnp.sum(loss(z, _LABELS)))(_LOGITS), grad,
        rtol=1e-4, atol=1e-6,
    )


def test_apl_is_alpha_nce_plus_beta_rce_batch_means():
  nce, _ = _numpy_nce(_LOGITS, _LABELS)
  rce, _ = _numpy_rce(_LOGITS, _LABELS)
  np.testing.assert_allclose(
      apl.apl_loss(_LOGITS, _LABELS, 10.0, 0.1),
      10.0 * nce.mean() + 0.1 * rce.mean(), rtol=1e-5,
  )


def test_rce_clips_probabilities_at_1e_7():
  logits = jnp.array([[30.0, 0.0, 0.0]])  # p_1 = p_2 = e^-30 < 1e-7.
  np.testing.assert_allclose(
      apl.reverse_cross_entropy(logits, jnp.array([0])), [-A * 2e-7], rtol=1e-4
  )


def test_ranges_on_random_and_saturated_logits():
  num_classes = 10
  logits = np.concatenate([
      _RNG.normal(0.0, 3.0, (200, num_classes)),
      _RNG.normal(0.0, 60.0, (200, num_classes)),  # Nearly one-hot.
  ]).astype(np.float32)
  labels = _RNG.integers(0, num_classes, 400)
  nce = apl.normalized_cross_entropy(logits, labels)
  rce = apl.reverse_cross_entropy(logits, labels)
  assert np.all((nce >= 0) & (nce <= 1))
  # Without the clip RCE is -A (1 - p_y) in [0, -A]; the clip lifts each
  # wrong class's probability to at least 1e-7.
  floor = 1e-7 * (num_classes - 1)
  assert np.all(rce >= -A * floor * (1 - 1e-5))
  assert np.all(rce <= -A * (1 + floor) * (1 + 1e-5))
  assert nce.min() < 1e-3 and rce.min() < 1e-3 and rce.max() > -A * 0.999


def test_losses_are_symmetric_sums_over_all_labels():
  """sum_j L(f(x), j) is a constant: 1 for NCE, -A (C - 1) for RCE."""
  num_classes = _LOGITS.shape[1]
  every_label = np.arange(num_classes)
  for z in _LOGITS:
    batch = np.repeat(z[None], num_classes, 0)
    nce = apl.normalized_cross_entropy(batch, every_label)
    rce = apl.reverse_cross_entropy(batch, every_label)
    np.testing.assert_allclose(jnp.sum(nce), 1.0, rtol=1e-5)
    np.testing.assert_allclose(jnp.sum(rce), -A * (num_classes - 1), rtol=1e-5)


@pytest.mark.parametrize(
    "dataset, expected",
    [
        ("mnist", (1.0, 10.0)),
        ("Fashion-MNIST", (1.0, 10.0)),  # The official MNIST config.
        ("cifar10", (1.0, 1.0)),
        ("cifar100", (10.0, 0.1)),
    ],
)
def test_alpha_beta_default_to_the_official_configs(dataset, expected):
  assert apl.alpha_beta(_config(dataset).method_args.apl, dataset) == expected


def test_alpha_beta_overrides_and_unknown_datasets():
  args = _config("cifar100", alpha=2.0).method_args.apl
  assert apl.alpha_beta(args, "cifar100") == (2.0, 0.1)
  with pytest.raises(ValueError, match="no official alpha/beta.*food101"):
    apl.make(_context("food101"))
  args = _config("food101", alpha=1.0, beta=1.0).method_args.apl
  assert apl.alpha_beta(args, "food101") == (1.0, 1.0)


def test_gradient_is_clipped_to_norm_5_before_torch_weight_decay():
  params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}
  grads = {"w": jnp.array([6.0, 0.0]), "b": jnp.array([8.0])}  # Norm 10.
  ctx = _context(lr=0.1)
  wd = ctx.config.weight_decay
  for max_norm, scale in ((5.0, 0.5), (None, 1.0), (20.0, 1.0)):
    ctx = _context(lr=0.1, max_grad_norm=max_norm)
    tx = apl.optimizer(ctx)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    for key in params:
      np.testing.assert_allclose(
          new[key],
          params[key] - 0.1 * (scale * grads[key] + wd * params[key]),
          rtol=1e-6,
      )


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("alpha", -1.0, "alpha=-1.0: expected a finite number >= 0"),
        ("beta", -0.1, "beta=-0.1: expected a finite number >= 0"),
        ("max_grad_norm", 0.0, "max_grad_norm=0.0: expected a finite number > 0"),
    ],
)
def test_out_of_range_args_are_rejected(field, value, error):
  with pytest.raises(ValueError, match=error):
    _context(**{field: value})
