"""MentorNet-PD: the mentor's v*, lambda's moving percentile, example dropout."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments import models
from experiments.methods import mentornet
from experiments.methods.base import Batch
from experiments.methods.base import StepInfo
from conftest import make_context

_ARGS = ml_collections.ConfigDict(mentornet.default_args())


def test_the_pd_mentor_in_its_three_regimes():
  loss = jnp.asarray([0.1, 0.5, 0.9, 1.4, 3.0])
  threshold = jnp.asarray(0.9)
  weights = lambda at: np.asarray(
      mentornet.mentor_weights(loss, threshold, jnp.asarray(at), _ARGS)
  )
  np.testing.assert_array_equal(weights(0), 1.0)
  np.testing.assert_array_equal(weights(18), 1.0)  # burn-in: progress <= 18
  np.testing.assert_array_equal(weights(19), [1, 1, 1, 0, 0])  # loss <= lambda
  np.testing.assert_array_equal(weights(89), [1, 1, 1, 0, 0])
  # SPCL-linear, gamma 1: clip(1 - (loss - lambda), 0, 1).
  np.testing.assert_allclose(weights(90), [1, 1, 1, 0.5, 0], atol=1e-6)


def test_progress_is_the_percentage_of_steps():
  steps = jnp.arange(0, 1000)
  at = np.asarray(mentornet.progress(steps, 1000))
  np.testing.assert_array_equal(at, np.arange(1000) // 10)
  assert int(mentornet.progress(jnp.asarray(5000), 1000)) == 99


def test_dropout_schedule_is_the_official_format():
  rates = mentornet.dropout_schedule("0.5,17,0.05,83")
  assert rates.shape == (100,)
  np.testing.assert_allclose(rates[:17], 0.5)
  np.testing.assert_allclose(rates[17:], 0.05)
  for bad in ("0.5,17", "0.5,17,0.05", "1.5,100", "a,b", "0.5,16.5,0.1,83.5"):
    with pytest.raises(ValueError, match="example_dropout_rates"):
      mentornet.dropout_schedule(bad)


def test_example_dropout_keeps_a_random_fixed_count():
  weights = jnp.linspace(0.1, 1.0, 32)
  kept = [
      np.asarray(mentornet.example_dropout(jax.random.key(k), weights, 0.5))
      for k in range(3)
  ]
  for k in kept:
    assert np.count_nonzero(k) == 16
    np.testing.assert_array_equal(k[k > 0], np.asarray(weights)[k > 0])
  assert not np.array_equal(kept[0] > 0, kept[1] > 0)
  assert np.count_nonzero(
      mentornet.example_dropout(jax.random.key(0), weights, 0.05)
  ) == 30  # int(32 * 0.95)


def _step(ctx, state, step):
  rng = np.random.default_rng(step)
  batch = Batch(
      jnp.asarray(rng.normal(size=(20, 28, 28, 1)), jnp.float32),
      jnp.asarray(rng.integers(0, 10, 20), jnp.int32),
      jnp.arange(20, dtype=jnp.int32),
  )
  info = StepInfo(jnp.asarray(step, jnp.int32), jnp.asarray(0, jnp.int32))
  return mentornet.make(ctx).train_step(state, batch, info), batch


def test_lambda_is_a_moving_average_of_the_batch_percentile():
  network = models.network("mlp", input_shape=(28, 28, 1), num_classes=10,
                           mlp_hidden=(8,))
  ctx = make_context("mentornet", network=network, num_epochs=10,
                     steps_per_epoch=10, lr=0.0)
  method = mentornet.make(ctx)
  state = method.init(jax.random.key(0))
  thresholds = []
  for step in range(3):
    (state, metrics), batch = _step(ctx, state, step)
    logits = network.apply(state.model.net.params, state.model.net.batch_stats,
                           batch.images, train=True)[0]
    loss = -jax.nn.log_softmax(logits)[jnp.arange(20), batch.labels]
    previous = thresholds[-1] if thresholds else 0.0
    expected = 0.5 * previous + 0.5 * np.percentile(loss, 75, method="nearest")
    np.testing.assert_allclose(metrics["loss_threshold"], expected, rtol=1e-5)
    thresholds.append(float(metrics["loss_threshold"]))
  # Burn-in with dropout 0.5: half of the batch trains, with weight 1.
  assert int(np.sum(metrics["selected"])) == 10
  assert float(metrics["mentor_weight"]) == pytest.approx(0.5)


def test_the_student_never_sees_the_noise_rate():
  network = models.network("mlp", input_shape=(28, 28, 1), num_classes=10,
                           mlp_hidden=(8,))
  outs = []
  for rate in (0.1, 0.6):
    ctx = make_context("mentornet", network=network, num_epochs=10,
                       steps_per_epoch=10, noise_rate=rate)
    ctx = ctx._replace(corruption_rate=rate)
    state = mentornet.make(ctx).init(jax.random.key(0))
    for step in (0, 50):
      (state, _), _ = _step(ctx, state, step)
    outs.append(jax.tree.leaves(state.model.net.params))
  for a, b in zip(*outs):
    np.testing.assert_array_equal(a, b)
