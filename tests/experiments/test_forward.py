"""Tests for Forward correction: its loss, its warm-up and its estimate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import methods
from experiments import train
from experiments.configs import default
from experiments.data import noise
from experiments.methods import forward
from experiments.methods import losses
from conftest import make_tiny_config
from conftest import make_tiny_dataset
from conftest import read_metrics

_LOGITS = np.array([[2.0, -1.0, 0.5], [0.1, 0.3, -2.0], [-1.0, 4.0, 1.0]])
_LABELS = np.array([0, 2, 1])
_T = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.0, 0.7]])


def _softmax(logits):
  exp = np.exp(logits - logits.max(axis=1, keepdims=True))
  return exp / exp.sum(axis=1, keepdims=True)


def test_forward_with_identity_is_cross_entropy_values_and_gradients():
  logits, labels = jnp.asarray(_LOGITS), jnp.asarray(_LABELS)

  def mean_forward(z):
    return jnp.mean(forward.forward_cross_entropy(z, labels, jnp.eye(3)))

  def mean_ce(z):
    return jnp.mean(losses.cross_entropy(z, labels))

  np.testing.assert_allclose(
      forward.forward_cross_entropy(logits, labels, jnp.eye(3)),
      losses.cross_entropy(logits, labels), atol=1e-6,  # float32 rounding.
  )
  np.testing.assert_allclose(
      jax.grad(mean_forward)(logits), jax.grad(mean_ce)(logits), atol=1e-7
  )


def test_forward_loss_and_gradient_against_numpy():
  p = _softmax(_LOGITS)
  q = np.sum(p * _T[:, _LABELS].T, axis=1)  # (p @ T)[i, y_i].
  np.testing.assert_allclose(
      forward.forward_cross_entropy(
          jnp.asarray(_LOGITS), jnp.asarray(_LABELS), jnp.asarray(_T)
      ),
      -np.log(q), rtol=1e-6,
  )
  # d/dz_k [-log sum_j p_j T_jy] = p_k - p_k T_ky / q.
  expected = (p - p * _T[:, _LABELS].T / q[:, None]) / len(_LABELS)
  grad = jax.grad(
      lambda z: jnp.mean(
          forward.forward_cross_entropy(z, jnp.asarray(_LABELS), jnp.asarray(_T))
      )
  )(jnp.asarray(_LOGITS))
  np.testing.assert_allclose(grad, expected, atol=1e-6)


def test_forward_loss_is_finite_where_t_has_zeros():
  transition = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
  values = forward.forward_cross_entropy(
      jnp.asarray(_LOGITS), jnp.asarray(_LABELS), transition
  )
  assert np.all(np.isfinite(values))


def make_context(
    method="forward", noise_type="symmetric", num_epochs=100, **args
):
  """A Context for `method` on MNIST-like 10 classes with a linear network."""
  config = default.get_config()
  config.method = method
  config.dataset = "mnist"
  config.noise_type = noise_type
  config.noise_rate = 0.2
  config.num_epochs = num_epochs
  for key, value in args.items():
    config.method_args[method][key] = value

  def apply(params, batch_stats, images, *, train):
    del train
    return images.reshape(len(images), -1) @ params["w"], batch_stats

  network = methods.Network(
      lambda key: methods.NetworkState(
          {"w": jax.random.normal(key, (4, 10))}, {}
      ),
      apply,
  )
  return methods.Context(
      args=methods.args_of(config), config=config, network=network,
      num_classes=10, num_train=100, steps_per_epoch=10,
      learning_rate=lambda step: 0.1, noise_rate=0.2, corruption_rate=0.2,
  )


@pytest.mark.parametrize(
    "num_epochs, warmup, expected", [(100, None, 10), (200, None, 20),
                                     (3, None, 1), (3, 2, 2)],
)
def test_warmup_is_a_tenth_of_the_run_unless_set(num_epochs, warmup, expected):
  ctx = make_context(num_epochs=num_epochs, warmup_epochs=warmup)
  assert forward.warmup_epochs(ctx.args, num_epochs) == expected
  method = forward.make(ctx)
  assert [p.name for p in method.phases] == ["warmup", "forward"]
  assert [p.num_epochs for p in method.phases] == [
      expected, num_epochs - expected
  ]


def test_bad_args_are_rejected():
  with pytest.raises(ValueError, match="transition='guess': expected one of"):
    make_context(transition="guess")
  with pytest.raises(ValueError, match="warmup_epochs=0: expected an integer >= 1"):
    make_context(warmup_epochs=0)
  with pytest.raises(ValueError, match="must be below num_epochs"):
    forward.make(make_context(num_epochs=3, warmup_epochs=3))


def test_oracle_uses_the_true_t_without_warmup():
  method = forward.make(make_context(transition="oracle"))
  assert [p.num_epochs for p in method.phases] == [0, 100]
  state = method.init(jax.random.key(0))
  np.testing.assert_allclose(
      state.estimate.transition,
      noise.transition_matrix("symmetric", 0.2, 10), rtol=1e-6,
  )
  with pytest.raises(ValueError, match="instance.*has none"):
    forward.make(make_context(transition="oracle", noise_type="instance"))


def test_warmup_then_estimate_then_forward(tmp_path):
  """Phases in metrics.jsonl; the estimate in summary.json and .npy files."""
  config = make_tiny_config(
      model="mlp", mlp_hidden=(16,), num_epochs=3, method="forward"
  )
  summary = train.train_and_evaluate(config, str(tmp_path), make_tiny_dataset())
  assert [r["phase"] for r in read_metrics(str(tmp_path))] == [
      "warmup", "forward", "forward"
  ]
  report = summary["method_report"]
  assert report["transition"] == "transition.npy"
  transition = np.load(tmp_path / "transition.npy")
  assert transition.shape == (10, 10)
  np.testing.assert_allclose(transition.sum(axis=1), 1.0, rtol=1e-5)
  assert not np.allclose(transition, np.eye(10))  # Estimated, not the init.
  true = noise.transition_matrix("symmetric", 0.2, 10)
  assert report["max_abs_error"] == pytest.approx(
      np.max(np.abs(transition - true)), rel=1e-5
  )
  assert 0.0 <= report["noise_rate_hat"] <= 1.0
  assert 0.0 <= report["cl_noise_rate_hat"] <= 1.0
