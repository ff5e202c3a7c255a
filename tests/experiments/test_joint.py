"""Tests for Joint Optimization: its loss, its label update and its stages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import methods
from experiments.methods import joint
from conftest import make_context

C = 4


def _context(num_train=6, num_epochs=100, network=None, **args):
  return make_context(
      "joint", num_epochs=num_epochs, network=network, num_classes=C,
      num_train=num_train, steps_per_epoch=3, **args,
  )


def _np_softmax(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def _np_joint_loss(logits, targets, prior, alpha, beta):
  """The paper's L_c + alpha L_p + beta L_e, written out in float64."""
  s = _np_softmax(logits)
  l_c = -np.mean(np.sum(targets * np.log(s), 1))
  mean_s = s.mean(0)
  l_p = np.sum(prior * np.log(prior / mean_s))
  l_e = -np.mean(np.sum(s * np.log(s), 1))
  return l_c + alpha * l_p + beta * l_e, (l_c, l_p, l_e)


def _numerical_grad(f, x, eps=1e-6):
  grad = np.zeros_like(x)
  for i in np.ndindex(x.shape):
    up, down = x.copy(), x.copy()
    up[i] += eps
    down[i] -= eps
    grad[i] = (f(up) - f(down)) / (2 * eps)
  return grad


@pytest.mark.parametrize("prior", [np.full(C, 1 / C), np.array([0.1, 0.2, 0.3, 0.4])])
def test_joint_loss_values_and_gradients_match_numpy(prior):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(5, C)) * 2
  targets = _np_softmax(rng.normal(size=(5, C)))
  alpha, beta = 1.2, 0.8
  total, terms = jax.jit(joint.joint_loss, static_argnums=(3, 4))(
      jnp.float32(logits), jnp.float32(targets), jnp.float32(prior), alpha, beta
  )
  expected, (l_c, l_p, l_e) = _np_joint_loss(logits, targets, prior, alpha, beta)
  np.testing.assert_allclose(total, expected, rtol=1e-5)
  np.testing.assert_allclose(terms["label_loss"], l_c, rtol=1e-5)
  np.testing.assert_allclose(terms["prior_loss"], l_p, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(terms["entropy_loss"], l_e, rtol=1e-5)
  assert l_p > 0  # A KL: positive unless the mean prediction is the prior.

  grad = jax.grad(lambda z: joint.joint_loss(
      z, jnp.float32(targets), jnp.float32(prior), alpha, beta)[0]
  )(jnp.float32(logits))
  numerical = _numerical_grad(
      lambda z: _np_joint_loss(z, targets, prior, alpha, beta)[0], logits
  )
  np.testing.assert_allclose(grad, numerical, rtol=1e-3, atol=1e-5)


def test_each_weight_scales_its_own_term():
  rng = np.random.default_rng(1)
  logits = jnp.float32(rng.normal(size=(3, C)))
  targets = jax.nn.one_hot(jnp.array([0, 2, 3]), C)
  prior = jnp.full((C,), 1 / C)
  base, terms = joint.joint_loss(logits, targets, prior, 0.0, 0.0)
  np.testing.assert_allclose(base, terms["label_loss"], rtol=1e-6)
  with_prior, _ = joint.joint_loss(logits, targets, prior, 2.0, 0.0)
  np.testing.assert_allclose(with_prior - base, 2.0 * terms["prior_loss"], rtol=1e-4)
  with_entropy, _ = joint.joint_loss(logits, targets, prior, 0.0, 3.0)
  np.testing.assert_allclose(
      with_entropy - base, 3.0 * terms["entropy_loss"], rtol=1e-5
  )


def test_soft_cross_entropy_matches_numpy_and_its_gradient():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(4, C))
  targets = _np_softmax(rng.normal(size=(4, C)))
  value = joint.soft_cross_entropy(jnp.float32(logits), jnp.float32(targets))
  np.testing.assert_allclose(
      value, -np.mean(np.sum(targets * np.log(_np_softmax(logits)), 1)), rtol=1e-5
  )
  # d/dz of mean_i CE(t_i, softmax z_i) = (softmax(z) - t) / B.
  grad = jax.grad(joint.soft_cross_entropy)(jnp.float32(logits), jnp.float32(targets))
  np.testing.assert_allclose(grad, (_np_softmax(logits) - targets) / 4, atol=1e-6)


def test_label_update_is_the_mean_of_the_last_epochs():
  """A window of 3 over 5 epochs, against a plain list of the epochs' outputs."""
  rng = np.random.default_rng(3)
  n, window = 5, 3
  noisy = np.array([0, 1, 2, 3, 1])
  recent, recorded = np.zeros((window, n, C), np.float32), 0
  seen = []
  for epoch in range(1, 6):
    preds = _np_softmax(rng.normal(size=(n, C))).astype(np.float32)
    if epoch == 1:
      preds[4] = 0.0  # Not visited in the first epoch: its noisy label counts.
    out = joint.update_window(recent, recorded, preds, noisy, epoch)
    recent, recorded = out.recent_predictions, out.num_recorded
    filled = preds.copy()
    filled[~preds.any(1)] = np.eye(C)[noisy[~preds.any(1)]]
    seen.append(filled)
    expected = np.mean(seen[-window:], axis=0)
    np.testing.assert_allclose(out.soft_labels, expected, rtol=1e-6)
    np.testing.assert_allclose(out.soft_labels.sum(1), 1.0, rtol=1e-5)
    assert recorded == min(epoch, window)
  assert not np.allclose(out.soft_labels, np.mean(seen, axis=0))


def test_stages_follow_the_official_proportions():
  assert joint.stage_epochs(_context(num_epochs=320).args, 320) == (200, 120, 70)
  assert joint.stage_epochs(_context(num_epochs=100).args, 100) == (62, 38, 22)
  assert joint.stage_epochs(_context(num_epochs=2).args, 2) == (1, 1, 1)
  ctx = _context(num_epochs=10, first_stage_epochs=4, begin_epoch=3)
  assert joint.stage_epochs(ctx.args, 10) == (4, 6, 3)
  method = joint.make(ctx)
  assert [method.phase_at(e)[0] for e in (1, 4, 5, 10)] == [
      "label_learning", "label_learning", "retrain", "retrain"
  ]


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("alpha", -1.0, "alpha=-1.0: expected a finite number >= 0"),
        ("num_recent", 0, "num_recent=0: expected an integer >= 1"),
        ("second_stage_targets", "mean", "second_stage_targets='mean': expected one of"),
        ("first_stage_learning_rate", 0.0, "first_stage_learning_rate=0.0: expected a finite number > 0"),
    ],
)
def test_out_of_range_args_are_rejected(field, value, error):
  with pytest.raises(ValueError, match=error):
    _context(**{field: value})


def _linear_network():
  def init(key):
    w = jax.random.normal(key, (2, C)) * 0.5
    return methods.NetworkState({"w": w, "b": jnp.zeros(C)}, {})

  def apply(params, batch_stats, images, *, train):
    del train
    return images @ params["w"] + params["b"], batch_stats

  return methods.Network(init, apply)


def test_steps_record_predictions_relabel_and_retrain_a_fresh_network():
  net = _linear_network()
  ctx = _context(
      num_train=6, num_epochs=3, network=net, first_stage_epochs=2,
      begin_epoch=2, num_recent=10,
  )
  method = joint.make(ctx)
  state = method.init(jax.random.key(0))
  images = jnp.float32(np.random.default_rng(4).normal(size=(6, 2)))
  noisy = np.array([0, 1, 2, 3, 0, 1], np.int32)
  info = methods.StepInfo(jnp.int32(0), jnp.int32(0))
  learn = jax.jit(method.phase_at(1)[1])
  view = methods.EpochView(noisy, lambda s: None)

  # Epoch 1: the batch is the first 4 examples; targets are the noisy labels.
  batch = methods.Batch(images[:4], jnp.asarray(noisy[:4]), jnp.arange(4))
  before = state.first.net.params
  state, metrics = learn(state, batch, info)
  logits = images[:4] @ before["w"] + before["b"]
  np.testing.assert_allclose(
      state.epoch_predictions[:4], jax.nn.softmax(logits), rtol=1e-6
  )
  assert not np.asarray(state.epoch_predictions[4:]).any()
  expected, _ = _np_joint_loss(
      np.asarray(logits, np.float64), np.eye(C)[noisy[:4]], np.full(C, 1 / C),
      1.2, 0.8,
  )
  np.testing.assert_allclose(metrics["train_loss"], expected, rtol=1e-5)
  state = method.end_epoch(state, 1, view)
  assert not bool(state.relabeled)  # begin_epoch = 2.
  np.testing.assert_array_equal(state.labels, noisy)

  # Epoch 2: all examples; the end of the epoch relabels from both epochs.
  epoch1 = np.asarray(state.recent_predictions[0])
  batch = methods.Batch(images, jnp.asarray(noisy), jnp.arange(6))
  state, _ = learn(state, batch, info)
  epoch2 = np.asarray(state.epoch_predictions)
  state = method.end_epoch(state, 2, view)
  expected_soft = (epoch1 + epoch2) / 2
  np.testing.assert_allclose(state.soft_labels, expected_soft, rtol=1e-6)
  np.testing.assert_allclose(epoch1[4:], np.eye(C)[noisy[4:]])  # Unvisited.
  labels = np.argmax(expected_soft, 1)
  np.testing.assert_array_equal(state.labels, labels)
  report = method.report(state)
  np.testing.assert_array_equal(report["relabeled_labels"], labels)
  assert report["num_labels_changed"] == int(np.sum(labels != noisy))

  # Stage 2: the fresh network learns the soft labels; the first is frozen.
  first = state.first.net.params
  fresh = state.second.net.params
  predict = jax.jit(method.predict)
  np.testing.assert_allclose(
      predict(state, images), images @ first["w"] + first["b"], rtol=1e-6
  )
  retrain = jax.jit(method.phase_at(3)[1])
  state, metrics = retrain(state, batch, info)
  grads = jax.grad(lambda p: joint.soft_cross_entropy(
      images @ p["w"] + p["b"], jnp.asarray(expected_soft)))(fresh)
  # One SGD step (momentum buffer empty) with the protocol's weight decay.
  wd = ctx.config.weight_decay
  for key in ("w", "b"):
    np.testing.assert_allclose(
        state.second.net.params[key],
        fresh[key] - 0.1 * (grads[key] + wd * fresh[key]), rtol=1e-5, atol=1e-7,
    )
    np.testing.assert_array_equal(state.first.net.params[key], first[key])
  second = state.second.net.params
  np.testing.assert_allclose(
      predict(state, images), images @ second["w"] + second["b"], rtol=1e-6
  )
  # The end of a stage-2 epoch leaves the labels alone.
  after = method.end_epoch(state, 3, view)
  np.testing.assert_array_equal(after.soft_labels, state.soft_labels)
