"""Tests for DMI: L_DMI against NumPy, its invariances, the batch-size limit
and the CE-then-DMI phases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import methods
from experiments import train
from experiments.configs import default
from experiments.methods import dmi
from conftest import make_tiny_config
from conftest import make_tiny_dataset
from conftest import read_metrics

_RNG = np.random.default_rng(2)
_LOGITS = _RNG.normal(0.0, 2.0, (12, 4)).astype(np.float32)
_LABELS = np.array([0, 1, 2, 3, 0, 1, 2, 3, 3, 1, 0, 2], np.int32)


def _softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _numpy_dmi(z, y, divide_by_batch=False):
  """-log(|det U| + 1e-3) and its gradient d/dz, in float64."""
  p = _softmax(z)
  onehot = np.eye(z.shape[1])[y]
  scale = 1.0 / len(y) if divide_by_batch else 1.0
  u = scale * onehot.T @ p
  det = np.linalg.det(u)
  # d|det U| / dU = |det U| U^-T.
  d_u = -abs(det) / (abs(det) + 1e-3) * np.linalg.inv(u).T
  d_p = scale * onehot @ d_u
  d_z = p * (d_p - np.sum(d_p * p, -1, keepdims=True))
  return -np.log(abs(det) + 1e-3), d_z, det


def _context(batch_size=None, num_classes=10, num_epochs=100, **args):
  """A context whose args.batch_size (the DMI phase's) is `batch_size`."""
  config = default.get_config()
  config.method = "dmi"
  config.method_args.dmi.batch_size = batch_size
  config.num_epochs = num_epochs
  for key, value in args.items():
    config.method_args.dmi[key] = value
  return methods.Context(
      args=methods.args_of(config), config=config, network=None,
      num_classes=num_classes, num_train=100, steps_per_epoch=10,
      learning_rate=lambda step: 0.1, noise_rate=0.2, corruption_rate=0.2,
  )


@pytest.mark.parametrize("divide_by_batch", [False, True])
def test_dmi_value_and_gradient_match_numpy(divide_by_batch):
  value, grad, _ = _numpy_dmi(_LOGITS, _LABELS, divide_by_batch)

  def loss(z):
    return dmi.dmi_loss(z, _LABELS, divide_by_batch)

  np.testing.assert_allclose(loss(_LOGITS), value, rtol=1e-5)
  np.testing.assert_allclose(jax.grad(loss)(_LOGITS), grad, rtol=1e-3, atol=1e-6)


def test_dmi_is_invariant_to_the_order_of_the_batch():
  order = _RNG.permutation(len(_LABELS))
  np.testing.assert_allclose(
      dmi.dmi_loss(_LOGITS[order], _LABELS[order]),
      dmi.dmi_loss(_LOGITS, _LABELS), rtol=1e-6,
  )
  grad = jax.grad(dmi.dmi_loss)(_LOGITS, _LABELS)
  np.testing.assert_allclose(
      jax.grad(dmi.dmi_loss)(_LOGITS[order], _LABELS[order]), grad[order],
      rtol=1e-4, atol=1e-6,  # The sum over examples is reassociated.
  )


def test_the_sign_of_the_determinant_does_not_matter():
  # Renaming two labels swaps two rows of U: det changes sign, loss does not.
  swapped = np.choose(_LABELS, [1, 0, 2, 3]).astype(np.int32)
  _, _, det = _numpy_dmi(_LOGITS, _LABELS)
  value, grad, swapped_det = _numpy_dmi(_LOGITS, swapped)
  np.testing.assert_allclose(swapped_det, -det, rtol=1e-9)
  assert swapped_det < 0 or det < 0
  np.testing.assert_allclose(
      dmi.dmi_loss(_LOGITS, swapped), dmi.dmi_loss(_LOGITS, _LABELS), rtol=1e-5
  )
  # Where det < 0 the gradient still increases |det| (lowers the loss).
  np.testing.assert_allclose(
      jax.grad(dmi.dmi_loss)(_LOGITS, swapped), grad, rtol=1e-3, atol=1e-6
  )


def test_a_class_missing_from_the_batch_gives_a_finite_zero_gradient():
  labels = np.where(_LABELS == 3, 0, _LABELS).astype(np.int32)  # No class 3.
  np.testing.assert_allclose(
      dmi.dmi_loss(_LOGITS, labels), -np.log(1e-3), rtol=1e-6
  )
  np.testing.assert_array_equal(jax.grad(dmi.dmi_loss)(_LOGITS, labels), 0.0)


def test_dividing_by_the_batch_makes_10_class_gradients_vanish():
  """Why U is not divided by B by default: |det(U / B)| <= 10^-10 << 1e-3."""
  logits = _RNG.normal(0.0, 3.0, (64, 10)).astype(np.float32)
  labels = np.argmax(logits + _RNG.normal(0.0, 1.0, logits.shape), -1)
  assert len(np.unique(labels)) == 10
  grads = [
      np.abs(jax.grad(dmi.dmi_loss)(logits, labels, d)).max()
      for d in (False, True)
  ]
  assert grads[0] > 1e-3 and grads[1] < 1e-6 * grads[0]


def test_fewer_examples_than_classes_is_rejected():
  # The reason: U has rank <= B < C, det(U) = 0 and there is no gradient.
  logits = _RNG.normal(0.0, 2.0, (8, 10)).astype(np.float32)
  labels = np.arange(8, dtype=np.int32)
  np.testing.assert_array_equal(jax.grad(dmi.dmi_loss)(logits, labels), 0.0)
  with pytest.raises(ValueError, match="batch_size >= num_classes.*batch_size=8"):
    dmi.make(_context(batch_size=8, num_classes=10))
  dmi.make(_context(batch_size=10, num_classes=10))


def test_dmi_phase_runs_at_the_official_batch_unless_set():
  # 256 for 10 classes (L_DMI CIFAR-10), more where 256 would miss a class.
  assert dmi.make(_context(num_classes=10)).train_batch_size == 256
  assert dmi.make(_context(num_classes=14)).train_batch_size == 256
  assert dmi.make(_context(num_classes=100)).train_batch_size == 1024
  assert dmi.make(_context(batch_size=48)).train_batch_size == 48
  for classes in (10, 100):
    batch = dmi.official_batch_size(classes)
    assert classes * (1 - 1 / classes) ** batch <= dmi.MISSING_CLASS_BOUND


def test_a_batch_missing_a_class_has_no_gradient():
  """Why the DMI phase needs a batch that holds every class."""
  logits = _RNG.normal(0.0, 2.0, (40, 10)).astype(np.float32)
  labels = np.arange(40, dtype=np.int32) % 9  # class 9 is missing
  np.testing.assert_array_equal(jax.grad(dmi.dmi_loss)(logits, labels), 0.0)
  labels[0] = 9
  assert np.abs(jax.grad(dmi.dmi_loss)(logits, labels)).max() > 0


def test_ce_phase_length_defaults_to_the_official_share():
  assert dmi.make(_context(num_epochs=220)).phases[0].num_epochs == 120
  assert dmi.make(_context(num_epochs=100)).phases[0].num_epochs == 55
  assert dmi.make(_context(num_epochs=100, ce_epochs=7)).phases[0].num_epochs == 7


def test_dmi_step_is_sgd_on_l_dmi_with_its_own_optimizer():
  """The DMI phase: one torch-SGD step (lr, momentum, wd from args) on L_DMI."""
  w0 = jnp.asarray(_RNG.normal(0.0, 1.0, (3, 4)), jnp.float32)

  def apply(params, batch_stats, images, *, train):
    del train
    return images @ params["w"], batch_stats

  net = methods.Network(lambda key: methods.NetworkState({"w": w0}, {}), apply)
  ctx = _context(batch_size=12, num_classes=4, learning_rate=0.01,
                 weight_decay=0.1)._replace(network=net)
  method = dmi.make(ctx)
  state = method.init(jax.random.key(0))
  images = jnp.asarray(_RNG.normal(0.0, 1.0, (12, 3)), jnp.float32)
  batch = methods.Batch(images, jnp.asarray(_LABELS), jnp.arange(12))
  info = methods.StepInfo(jnp.int32(0), jnp.int32(0))
  new_state, metrics = jax.jit(method.train_step)(state, batch, info)

  def loss(w):
    return dmi.dmi_loss(images @ w, _LABELS)

  expected = w0 - 0.01 * (jax.grad(loss)(w0) + 0.1 * w0)
  np.testing.assert_allclose(new_state.net.params["w"], expected, rtol=1e-5)
  np.testing.assert_allclose(metrics["train_loss"], loss(w0), rtol=1e-6)
  # The CE phase's optimizer state is left as it was.
  jax.tree.map(np.testing.assert_array_equal,
               new_state.ce_opt_state, state.ce_opt_state)


def test_metrics_show_the_ce_phase_then_dmi(tmp_path):
  config = make_tiny_config(
      model="mlp", mlp_hidden=(16,), num_epochs=3, method="dmi"
  )
  config.method_args.dmi.ce_epochs = 1
  config.method_args.dmi.batch_size = 16
  config.method_args.dmi.learning_rate = 0.0  # DMI then leaves the net as is.
  train.train_and_evaluate(config, str(tmp_path), make_tiny_dataset())
  history = read_metrics(str(tmp_path))
  assert [r["phase"] for r in history] == ["ce", "train", "train"]
  # Epochs 2 and 3 use DMI's optimizer (lr 0 here), not the protocol's.
  assert history[1]["test_acc"] == history[2]["test_acc"]
  # The log shows the rate each phase used: the protocol's, then DMI's.
  assert [r["learning_rate"] for r in history] == pytest.approx([0.01, 0.0, 0.0])
  # L_DMI with 16 examples and 10 classes is near -log(1e-3), not CE's ~2.3.
  assert history[1]["train_loss"] > 4.0
