"""Tests for the small-loss baselines: MentorNet, Co-teaching, Co-teaching+.

Each selection is checked against a plain NumPy/Python statement written
independently of `experiments/methods/small_loss.py`; the contract test of
`test_methods.py` runs the three registered methods end to end.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import methods
from experiments.configs import default
from experiments.methods import coteaching
from experiments.methods import coteaching_plus
from experiments.methods import losses
from experiments.methods import self_paced
from experiments.methods import selection
from experiments.methods import small_loss


def _reference_mask(loss, keep, candidates):
  """The `keep` candidates of smallest loss; ties: earlier position first."""
  order = sorted(
      (i for i in range(len(loss)) if candidates[i]), key=lambda i: (loss[i], i)
  )
  mask = np.zeros(len(loss), bool)
  mask[order[:keep]] = True
  return mask


def _reference_keep(tau, t, num_gradual, exponent, n):
  """int(R(t) n) with R(t) = 1 - tau min((t / T_k)^c, 1); all n if that is 0."""
  ramp = min((t / num_gradual) ** exponent, 1.0) if num_gradual else 1.0
  keep = int((1.0 - tau * ramp) * n)
  return keep if keep else n


# ---------------------------------------------------------------------------
# Selection and schedule
# ---------------------------------------------------------------------------


def test_small_loss_mask_matches_numpy_with_ties_and_candidates():
  select = jax.jit(selection.small_loss_mask)
  rng = np.random.default_rng(0)
  for trial, size in enumerate([1, 7, 32] * 12):
    # Few distinct values: many ties.
    loss = rng.integers(0, 4, size).astype(np.float32)
    candidates = rng.random(size) < 0.6 if trial % 2 else np.ones(size, bool)
    keep = int(rng.integers(0, candidates.sum() + 1))
    got = select(jnp.asarray(loss), jnp.int32(keep), jnp.asarray(candidates))
    np.testing.assert_array_equal(got, _reference_mask(loss, keep, candidates))


def test_small_loss_mask_keeps_the_earlier_of_tied_examples():
  loss = jnp.array([0.5, 0.1, 0.5, 0.5, 0.1])
  np.testing.assert_array_equal(
      selection.small_loss_mask(loss, jnp.int32(3)),
      [True, True, False, False, True],
  )
  # Non-candidates are never kept, however small their loss.
  candidates = jnp.array([True, False, True, True, False])
  np.testing.assert_array_equal(
      selection.small_loss_mask(loss, jnp.int32(2), candidates),
      [True, False, True, False, False],
  )


@pytest.mark.parametrize(
    "tau, num_gradual, exponent",
    [(0.2, 10, 1.0), (0.45, 10, 1.0), (0.4, 5, 2.0), (0.5, 15, 0.5),
     (0.3, 0, 1.0), (0.0, 10, 1.0)],
)
def test_keep_count_is_int_of_r_t_times_n(tau, num_gradual, exponent):
  rates = selection.remember_rates(tau, num_gradual, exponent)
  table = selection.keep_counts(rates, 128)
  count = jax.jit(lambda e, n: selection.keep_count(table, e, n))
  for t in range(0, 40, 3):
    for n in (0, 1, 2, 7, 31, 32, 64, 127, 128):
      assert int(count(jnp.int32(t), jnp.int32(n))) == _reference_keep(
          tau, t, num_gradual, exponent, n
      ), (t, n)


def test_schedule_values_of_the_co_teaching_default():
  rates = selection.remember_rates(0.2, 10, 1.0)
  table = selection.keep_counts(rates, 128)
  keeps = [int(selection.keep_count(table, jnp.int32(t), 128))
           for t in (0, 1, 5, 10, 11, 199)]
  # R = 1, 0.98, 0.9, 0.8, 0.8, 0.8 of a batch of 128.
  assert keeps == [128, 125, 115, 102, 102, 102]


# ---------------------------------------------------------------------------
# The three selection rules
# ---------------------------------------------------------------------------


def _forward(logits, loss):
  return small_loss.Forward(
      jnp.asarray(logits, jnp.float32), jnp.asarray(loss, jnp.float32),
      None, None,
  )


def _info(epoch, step=0):
  return methods.StepInfo(jnp.int32(step), jnp.int32(epoch))


def _batch(size):
  return methods.Batch(None, jnp.zeros(size, jnp.int32), jnp.arange(size))


def _table(tau, batch_size):
  return selection.keep_counts(selection.remember_rates(tau, 10, 1.0), batch_size)


def test_self_paced_keeps_its_own_small_loss_examples():
  rng = np.random.default_rng(1)
  loss = rng.random(20)
  fwd = _forward(np.zeros((20, 3)), loss)
  sel = self_paced.select_own_small_loss((fwd,), _batch(20), _info(5), _table(0.4, 20))
  keep = int((1 - 0.4 * 0.5) * 20)  # R(5) = 0.8 -> 16 of 20.
  np.testing.assert_array_equal(
      sel.weights[0] > 0, _reference_mask(loss, keep, np.ones(20, bool))
  )
  assert np.all(sel.judged)


def test_co_teaching_each_network_learns_its_peers_selection():
  rng = np.random.default_rng(2)
  loss1, loss2 = rng.random(16), rng.random(16)
  fwds = (_forward(np.zeros((16, 3)), loss1), _forward(np.zeros((16, 3)), loss2))
  sel = coteaching.select_peer_small_loss(fwds, _batch(16), _info(10), _table(0.5, 16))
  everyone = np.ones(16, bool)
  np.testing.assert_array_equal(sel.weights[0] > 0, _reference_mask(loss2, 8, everyone))
  np.testing.assert_array_equal(sel.weights[1] > 0, _reference_mask(loss1, 8, everyone))


def _plus_context(steps_per_epoch=100, **args):
  config = default.get_config()
  config.method = "coteaching_plus"
  for key, value in args.items():
    config.method_args.coteaching_plus[key] = value
  return methods.Context(
      args=methods.args_of(config), config=config, network=None, num_classes=3,
      num_train=100, steps_per_epoch=steps_per_epoch,
      learning_rate=lambda step: 0.1, noise_rate=0.5, corruption_rate=0.5,
  )


def _plus_select(logits1, logits2, loss1, loss2, epoch, step=0, tau=0.5):
  fwds = (_forward(logits1, loss1), _forward(logits2, loss2))
  size = len(loss1)
  select = coteaching_plus.select_in_disagreement(_plus_context())
  return select(fwds, _batch(size), _info(epoch, step), _table(tau, size))


def _predictions_to_logits(preds):
  return np.eye(3)[np.asarray(preds)]


def test_co_teaching_plus_selects_small_losses_among_disagreements():
  rng = np.random.default_rng(3)
  pred1 = rng.integers(0, 3, 24)
  pred2 = np.where(rng.random(24) < 0.5, pred1, (pred1 + 1) % 3)
  disagree = pred1 != pred2
  loss1, loss2 = rng.random(24), rng.random(24)
  sel = _plus_select(
      _predictions_to_logits(pred1), _predictions_to_logits(pred2),
      loss1, loss2, epoch=4,
  )
  keep = int((1 - 0.5 * 0.4) * disagree.sum())  # R(4) = 0.8 of D.
  assert 0 < keep < disagree.sum()
  np.testing.assert_array_equal(sel.weights[0] > 0, _reference_mask(loss2, keep, disagree))
  np.testing.assert_array_equal(sel.weights[1] > 0, _reference_mask(loss1, keep, disagree))
  np.testing.assert_array_equal(sel.judged, disagree)
  np.testing.assert_allclose(sel.metrics["disagreement_fraction"], disagree.mean())


def test_co_teaching_plus_keeps_every_disagreement_when_the_count_rounds_to_0():
  # One disagreement of 8: int(R(10) * 1) = int(0.5) = 0 -> keep it
  # (coteaching_plus loss.py L24-27).
  pred1 = np.array([0, 1, 2, 0, 1, 2, 0, 1])
  pred2 = pred1.copy()
  pred2[5] = 0
  loss = np.linspace(0.0, 1.0, 8)
  sel = _plus_select(
      _predictions_to_logits(pred1), _predictions_to_logits(pred2),
      loss, loss, epoch=10,
  )
  expected = np.zeros(8, bool)
  expected[5] = True
  for w in sel.weights:
    np.testing.assert_array_equal(w > 0, expected)


@pytest.mark.parametrize(
    "epoch, step, trains",
    [
        (0, 0, True),
        (0, 99, True),  # (0 + 1) * 99 < 5000.
        (60, 6081, True),  # Iteration 81 of epoch 61: 61 * 81 = 4941.
        (60, 6082, False),  # 61 * 82 = 5002: nothing is learned.
        (99, 9900, True),  # The first iteration of every epoch: 0.
    ],
)
def test_co_teaching_plus_without_disagreement_follows_the_official_fallback(
    epoch, step, trains
):
  logits = _predictions_to_logits([0, 1, 2, 1])
  sel = _plus_select(logits, logits, np.ones(4), np.ones(4), epoch, step)
  for w in sel.weights:
    np.testing.assert_array_equal(w, np.full(4, float(trains)))
  assert not np.any(sel.judged)
  assert float(sel.metrics["disagreement_fraction"]) == 0.0


def test_co_teaching_plus_init_epoch_per_dataset():
  args = _plus_context().args
  for dataset, expected in (("fashion_mnist", 0), ("mnist", 0),
                            ("cifar10", 20), ("CIFAR100", 5)):
    assert coteaching_plus.init_epoch(args, dataset) == expected
  with pytest.raises(ValueError, match="init_epoch"):
    coteaching_plus.init_epoch(args, "food101")
  assert coteaching_plus.init_epoch(_plus_context(init_epoch=3).args, "food101") == 3


# ---------------------------------------------------------------------------
# The compiled two-network step
# ---------------------------------------------------------------------------

_W = jnp.array([[0.3, -0.2, 0.1], [0.0, 0.4, -0.5]])


def _linear_network():
  def init(key):
    w = _W + jax.random.normal(key, _W.shape)
    return methods.NetworkState({"w": w}, {})

  def apply(params, batch_stats, images, *, train):
    del train
    return images.reshape(images.shape[0], -1) @ params["w"], batch_stats

  return methods.Network(init, apply)


def _context(method, lr=0.1, noise_rate=0.5, num_train=12, **args):
  config = default.get_config()
  config.method = method
  for key, value in args.items():
    config.method_args[method][key] = value
  return methods.Context(
      args=methods.args_of(config), config=config, network=_linear_network(),
      num_classes=3, num_train=num_train, steps_per_epoch=10,
      learning_rate=lambda step: lr, noise_rate=noise_rate, corruption_rate=noise_rate,
  )


def _sgd_step(params, images, labels, weights, lr):
  """torch SGD (wd 1e-3) from zero momentum on the mean CE of the weighted."""
  def loss(p):
    ce = losses.cross_entropy(images @ p["w"], labels)
    return jnp.sum(weights * ce) / max(weights.sum(), 1)

  g = jax.grad(loss)(params)["w"]
  return params["w"] - lr * (g + 1e-3 * params["w"])


def test_co_teaching_step_updates_each_network_on_its_peers_selection():
  ctx = _context("coteaching", num_train=12)
  method = coteaching.make(ctx)
  state = method.init(jax.random.key(0))
  rng = np.random.default_rng(4)
  images = jnp.asarray(rng.normal(size=(8, 2)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 3, 8), jnp.int32)
  indices = jnp.array([3, 0, 7, 11, 5, 1, 9, 2])
  batch = methods.Batch(images, labels, indices)
  new, metrics = jax.jit(method.train_step)(state, batch, _info(epoch=10, step=100))

  params = [learner.net.params for learner in state.learners]
  ce = [np.asarray(losses.cross_entropy(images @ p["w"], labels)) for p in params]
  keep = 4  # R(10) = 1 - 0.5 of 8.
  chosen = [_reference_mask(c, keep, np.ones(8, bool)) for c in ce]
  assert np.any(chosen[0] != chosen[1])  # Otherwise the exchange is invisible.
  for i, peer in ((0, 1), (1, 0)):
    np.testing.assert_allclose(
        new.learners[i].net.params["w"],
        _sgd_step(params[i], images, labels, chosen[peer].astype(np.float32), 0.1),
        rtol=1e-5, atol=1e-7,
    )
  np.testing.assert_array_equal(metrics["selected"], chosen[1])
  np.testing.assert_allclose(
      metrics["train_loss"], ce[0][chosen[1]].mean(), rtol=1e-6
  )
  # Per-example record: selected by network 2 -> seen and kept in epoch 10.
  record = new.record
  ids = np.asarray(indices)
  np.testing.assert_array_equal(record.times_selected[ids], chosen[1].astype(int))
  np.testing.assert_array_equal(record.last_judged[ids], 10)
  np.testing.assert_array_equal(record.last_selected[ids], np.where(chosen[1], 10, -1))
  unseen = np.setdiff1d(np.arange(12), ids)
  np.testing.assert_array_equal(record.last_judged[unseen], -1)
  report = method.report(jax.device_get(new))
  np.testing.assert_array_equal(report["noisy_ids"], np.sort(ids[~chosen[1]]))
  assert report["num_noisy"] == 4
  # Network 1 is the one evaluated.
  np.testing.assert_allclose(
      method.predict(new, images), images @ new.learners[0].net.params["w"]
  )


def test_self_paced_step_is_one_network_on_its_own_selection():
  ctx = _context("self_paced", noise_rate=0.25)
  method = self_paced.make(ctx)
  state = method.init(jax.random.key(1))
  assert len(state.learners) == 1
  rng = np.random.default_rng(5)
  images = jnp.asarray(rng.normal(size=(8, 2)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 3, 8), jnp.int32)
  batch = methods.Batch(images, labels, jnp.arange(8))
  new, metrics = jax.jit(method.train_step)(state, batch, _info(epoch=20))
  params = state.learners[0].net.params
  ce = np.asarray(losses.cross_entropy(images @ params["w"], labels))
  chosen = _reference_mask(ce, 6, np.ones(8, bool))  # R = 0.75 of 8.
  np.testing.assert_array_equal(metrics["selected"], chosen)
  np.testing.assert_allclose(
      new.learners[0].net.params["w"],
      _sgd_step(params, images, labels, chosen.astype(np.float32), 0.1),
      rtol=1e-5, atol=1e-7,
  )


def test_report_uses_the_most_recent_judgement():
  record = selection.empty_record(5)
  idx = jnp.array([0, 1, 2])
  # Epoch 0: 0 and 1 judged, 0 kept; 2 not judged (networks agreed).
  record = selection.record_selection(
      record, idx, jnp.int32(0), jnp.array([True, True, False]),
      jnp.array([True, False, False]),
  )
  # Epoch 1: 0 judged and rejected, 1 judged and kept.
  record = selection.record_selection(
      record, jnp.array([1, 0]), jnp.int32(1), jnp.array([True, True]),
      jnp.array([True, False]),
  )
  np.testing.assert_array_equal(selection.judged_noisy(record), [0])
  np.testing.assert_array_equal(record.times_selected, [1, 1, 0, 0, 0])


def test_adam_option_is_the_official_plan():
  ctx = _context("coteaching", optimizer="adam")._replace(steps_per_epoch=1)
  ctx.config.num_epochs = 200
  tx = small_loss.optimizer(ctx)
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  plan = []
  for _ in range(200):  # One step per epoch.
    _, state = update(params, state, params)
    plan.append((state.hyperparams["learning_rate"], state.hyperparams["b1"]))
  plan = np.array(plan)
  # Constant to epoch 79, then (200 - e) / 120 of 1e-3 with beta1 = 0.1.
  epochs = np.arange(200)
  np.testing.assert_allclose(
      plan[:, 0], 1e-3 * np.minimum((200 - epochs) / 120, 1.0), rtol=1e-6
  )
  np.testing.assert_allclose(plan[:, 1], np.where(epochs < 80, 0.9, 0.1), rtol=1e-6)


@pytest.mark.parametrize(
    "method, field, value, error",
    [
        ("coteaching", "forget_rate", 1.0, r"forget_rate=1.0: expected a finite number >= 0 and < 1"),
        ("self_paced", "num_gradual", -1, "num_gradual=-1: expected an integer >= 0"),
        ("coteaching", "exponent", 0.0, "exponent=0.0: expected a finite number > 0"),
        ("self_paced", "optimizer", "rmsprop", "optimizer='rmsprop': expected one of"),
        ("coteaching_plus", "init_epoch", -2, "init_epoch=-2: expected an integer >= 0"),
    ],
)
def test_out_of_range_args_are_rejected(method, field, value, error):
  config = default.get_config()
  config.method = method
  config.method_args[method][field] = value
  with pytest.raises(ValueError, match=error):
    methods.args_of(config)


def test_forget_rate_defaults_to_the_noise_rate():
  assert small_loss.forget_rate(_context("coteaching", noise_rate=0.3)) == 0.3
  ctx = _context("coteaching", noise_rate=0.3, forget_rate=0.1)
  assert small_loss.forget_rate(ctx) == 0.1


def test_the_log_shows_adams_rate_not_the_protocols(tmp_path):
  from experiments import train  # pylint: disable=g-import-not-at-top
  from conftest import make_tiny_config, make_tiny_dataset, read_metrics  # pylint: disable=g-import-not-at-top
  config = make_tiny_config(
      model="mlp", mlp_hidden=(16,), num_epochs=3, method="self_paced"
  )
  config.method_args.self_paced.optimizer = "adam"
  config.method_args.self_paced.adam_decay_start = 1
  train.train_and_evaluate(config, str(tmp_path), make_tiny_dataset())
  # 1e-3 x min((3 - e) / 2, 1) for the 0-based epochs e = 0, 1, 2.
  rates = [r["learning_rate"] for r in read_metrics(str(tmp_path))]
  assert rates == pytest.approx([1e-3, 1e-3, 5e-4])
  assert config.learning_rate != 1e-3


def test_traced_keep_counts_match_the_float64_table_off_rounding_ties():
  rates = selection.remember_rates(0.4, 10, 1.0)
  traced = np.asarray(
      selection.keep_counts_traced(jnp.asarray(rates, jnp.float32), 32)
  )
  exact = selection.keep_counts(rates, 32)
  products = rates[:, None] * np.arange(33)[None, :]
  near_integer = np.abs(products - np.round(products)) < 1e-6
  np.testing.assert_array_equal(traced[~near_integer], exact[~near_integer])
  # e.g. R(9) n = 0.64 x 25: 15.999... in float64, 16 in float32.
  assert np.all(np.abs(traced - exact) <= 1) and near_integer[9, 25]


def _estimated_config(**args):
  from conftest import make_tiny_config  # pylint: disable=g-import-not-at-top
  config = make_tiny_config(
      model="mlp", mlp_hidden=(16,), num_epochs=3, method="coteaching",
      noise_rate=0.4,
  )
  config.method_args.coteaching.num_gradual = 0  # the whole tau at once
  for key, value in {"forget_rate_source": "anchor", "warmup_epochs": 1,
                     **args}.items():
    config.method_args.coteaching[key] = value
  return config


def test_estimated_forget_rate_after_a_warmup_and_resume(tmp_path):
  import copy  # pylint: disable=g-import-not-at-top
  from experiments import train  # pylint: disable=g-import-not-at-top
  from conftest import make_tiny_dataset, read_metrics, without_times  # pylint: disable=g-import-not-at-top
  dataset = make_tiny_dataset()
  summary = train.train_and_evaluate(
      _estimated_config(), str(tmp_path / "full"), dataset
  )
  history = read_metrics(str(tmp_path / "full"))
  # Warm-up: tau = 0, every example kept; then the estimate, in the state.
  assert history[0]["forget_rate"] == 0.0
  assert history[0]["selected_fraction"] == 1.0
  report = summary["method_report"]
  tau_hat = report["estimated_tau"]
  assert 0.0 < tau_hat < 1.0 and report["true_noise_rate"] == 0.4
  assert [r["forget_rate"] for r in history[1:]] == pytest.approx([tau_hat] * 2)
  # int((1 - tau_hat) * 16) of each batch of 16.
  kept = int((1 - np.float32(tau_hat)) * 16) / 16
  assert history[1]["selected_fraction"] == pytest.approx(kept)
  stopped = copy.deepcopy(_estimated_config())
  stopped.stop_after_epochs = 2
  assert train.train_and_evaluate(stopped, str(tmp_path / "r"), dataset) is None
  train.train_and_evaluate(_estimated_config(), str(tmp_path / "r"), dataset)
  assert without_times(read_metrics(str(tmp_path / "r"))) == without_times(history)


@pytest.mark.parametrize(
    "args, message",
    [
        ({"forget_rate_source": "guess"}, "forget_rate_source=.*: expected one of"),
        ({"forget_rate": 0.2}, "contradict each other"),
        ({"warmup_epochs": 3}, r"warmup_epochs=3 must be in \[1, num_epochs=3\)"),
    ],
)
def test_bad_estimation_arguments_are_found_before_training(args, message):
  from experiments import run_config  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=message):
    run_config.validate(_estimated_config(**args))
