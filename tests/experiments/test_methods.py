"""Tests for the Method interface, the registry and the CE/CDR methods.

`test_every_method_trains_resumes_and_runs_on_2_devices` is the contract every
registered method must pass. `TwoNetworks` below is a throwaway method with
two networks, per-example state, a warm-up phase and an end-of-epoch hook:
proof that such baselines are modules, not branches in the loop.
"""

import copy
import os
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from experiments import methods
from experiments import steps
from experiments import train
from experiments.configs import default
from experiments.methods import cdr
from experiments.methods import losses
from experiments.methods import supervised
from conftest import make_tiny_config
from conftest import make_tiny_dataset
from conftest import read_metrics
from conftest import REPO
from conftest import without_times
from conftest import make_context


def _context(method="ce", noise_rate=0.5, lr=0.1, **args):
  return make_context(method, noise_rate=noise_rate, lr=lr, **args)


# ---------------------------------------------------------------------------
# Registry and hyperparameters
# ---------------------------------------------------------------------------


def test_unknown_method_names_the_valid_ones():
  with pytest.raises(ValueError, match="unknown method 'no_such_method'.*'ce'"):
    methods.get("no_such_method")


def test_each_method_owns_its_args_and_misspellings_fail():
  config = default.get_config()
  assert set(config.method_args) == set(methods.REGISTRY)
  assert config.method_args.cdr_paper.lam == 1e-3
  config.lock()
  with pytest.raises(AttributeError):
    config.method_args.cdr_ref.tua = 0.3  # A typo is an error, not a field.


@pytest.mark.parametrize(
    "method, field, value, error",
    [
        ("cdr_ref", "tau", 1.5, r"tau=.*: expected a finite number >= 0 and <= 1"),
        ("cdr_ref", "tau", -0.1, r"tau=.*: expected a finite number >= 0 and <= 1"),
        ("cdr_paper", "lam", -1e-3, "lam=-0.001: expected a finite number >= 0"),
    ],
)
def test_out_of_range_args_are_rejected(method, field, value, error):
  with pytest.raises(ValueError, match=error):
    _context(method, **{field: value})


# ---------------------------------------------------------------------------
# CE and CDR updates
# ---------------------------------------------------------------------------

_PARAMS = {"w": jnp.array([[0.5, -1.0], [2.0, 0.1]]), "b": jnp.array([0.3, -0.2])}
_GRADS = {"w": jnp.array([[1.0, 1.0], [0.1, -1.0]]), "b": jnp.array([1.0, 1.0])}


def _updates(tx, num_steps=1):
  """Params after `num_steps` updates, each with the gradient `_GRADS`."""
  params, state = _PARAMS, tx.init(_PARAMS)
  for _ in range(num_steps):
    updates, state = tx.update(_GRADS, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def test_ce_is_torch_sgd_with_weight_decay():
  ctx = _context("ce", lr=0.1)
  params, _ = _updates(supervised.sgd_weight_decay(ctx))
  jax.tree.map(
      lambda p, g, w: np.testing.assert_allclose(
          p, w - 0.1 * (g + 1e-3 * w), rtol=1e-6
      ),
      params, _GRADS, _PARAMS,
  )


def test_cdr_ref_scales_critical_kernel_grads_before_torch_sgd():
  # tau = the noise rate (0.5): 2 of 4 kernel entries are critical (scores
  # |g*w| 0.5, 1.0, 0.2, 0.1), scaled by 1 - tau; biases keep their gradient.
  params, state = _updates(cdr.optimizer_ref(_context("cdr_ref", 0.5, lr=0.1)))
  critical = np.array([[True, True], [False, False]])
  g = np.where(critical, 0.5 * _GRADS["w"], 0.0)
  np.testing.assert_allclose(
      params["w"], _PARAMS["w"] - 0.1 * (g + 1e-3 * _PARAMS["w"]), rtol=1e-6
  )
  np.testing.assert_allclose(
      params["b"], _PARAMS["b"] - 0.1 * (_GRADS["b"] + 1e-3 * _PARAMS["b"]),
      rtol=1e-6,
  )
  metrics = cdr.critical_fraction(state)
  np.testing.assert_allclose(metrics["critical_fraction"], 2 / 4)


def test_cdr_paper_is_the_papers_equations_with_plain_sgd():
  """Three steps of W_c -= lr((1-tau) g + lam sgn W_c), W_n -= lr lam sgn W_n.

  With momentum (the old cdr_paper) the second step already differs: the
  non-critical weights would move along their momentum buffer.
  """
  lr, lam, tau = 0.1, 0.01, 0.25
  ctx = _context("cdr_paper", noise_rate=0.5, lr=lr, tau=tau, lam=lam)
  params, _ = _updates(cdr.optimizer_paper(ctx), num_steps=3)
  w, b = np.asarray(_PARAMS["w"]), np.asarray(_PARAMS["b"])
  g = np.asarray(_GRADS["w"])
  for _ in range(3):
    scores = np.abs(g * w).ravel()
    k = int((1 - tau) * scores.size)  # tau overrides the noise rate.
    critical = np.abs(g * w) >= np.sort(scores)[::-1][k - 1]
    w = w - lr * (np.where(critical, (1 - tau) * g, 0.0) + lam * np.sign(w))
    b = b - lr * np.asarray(_GRADS["b"])  # Biases: plain SGD, not ranked.
  np.testing.assert_allclose(params["w"], w, rtol=1e-6)
  np.testing.assert_allclose(params["b"], b, rtol=1e-6)


def test_supervised_step_applies_the_optimizer_to_the_mean_ce_gradient():
  """One `train_step` = one optimizer update on the batch's mean CE."""
  ctx = _context("ce", lr=0.1)

  def apply(params, batch_stats, images, *, train):
    del train
    return images @ params["w"] + params["b"], batch_stats

  net = methods.Network(
      lambda key: methods.NetworkState(_PARAMS, {"count": jnp.zeros([])}), apply
  )
  tx = supervised.sgd_weight_decay(ctx)
  method = supervised.supervised(ctx._replace(network=net), tx)
  state = method.init(jax.random.key(0))
  images = jnp.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]])
  labels = jnp.array([0, 1, 1])
  batch = methods.Batch(images, labels, jnp.arange(3))
  info = methods.StepInfo(jnp.int32(0), jnp.int32(0))
  new_state, metrics = jax.jit(method.train_step)(state, batch, info)

  def loss(params):
    return jnp.mean(losses.cross_entropy(apply(params, {}, images, train=True)[0], labels))

  grads = jax.grad(loss)(_PARAMS)
  updates, _ = tx.update(grads, tx.init(_PARAMS), _PARAMS)
  expected = optax.apply_updates(_PARAMS, updates)
  jax.tree.map(
      lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-6),
      new_state.net.params, expected,
  )
  np.testing.assert_allclose(metrics["train_loss"], loss(_PARAMS), rtol=1e-6)
  logits = apply(_PARAMS, {}, images, train=True)[0]
  np.testing.assert_allclose(
      metrics["train_running_acc"], np.mean(np.argmax(logits, -1) == labels)
  )
  np.testing.assert_allclose(
      method.predict(new_state, images), apply(expected, {}, images, train=False)[0]
  )


# ---------------------------------------------------------------------------
# A method with two networks and per-example state, written against the
# interface in a few dozen lines (the shape of Co-teaching).
# ---------------------------------------------------------------------------


class TwoNetworksState(NamedTuple):
  nets: tuple  # Two SupervisedState-like (NetworkState, opt_state) pairs.
  times_selected: jax.Array  # (num_train,) int32: per-example state.
  last_train_acc: jax.Array  # float32, set by end_epoch.


def make_two_networks(ctx: methods.Context) -> methods.Method:
  """Each network keeps its smaller-loss half of the batch; its peer learns it."""
  network = ctx.network
  tx = optax.sgd(ctx.learning_rate, ctx.config.momentum)

  def init(key):
    nets = []
    for k in jax.random.split(key):
      net = network.init(k)
      nets.append((net, tx.init(net.params)))
    return TwoNetworksState(
        tuple(nets), jnp.zeros(ctx.num_train, jnp.int32), jnp.zeros([])
    )

  def per_example_loss(net_state, params, batch):
    logits, stats = network.apply(
        params, net_state.batch_stats, batch.images, train=True
    )
    return losses.cross_entropy(logits, batch.labels), stats

  def update(pair, batch, weights):
    net, opt_state = pair

    def objective(params):
      loss, stats = per_example_loss(net, params, batch)
      return jnp.sum(weights * loss) / jnp.sum(weights), (loss, stats)

    (value, (loss, stats)), grads = jax.value_and_grad(objective, has_aux=True)(
        net.params
    )
    updates, opt_state = tx.update(grads, opt_state, net.params)
    params = optax.apply_updates(net.params, updates)
    return (methods.NetworkState(params, stats), opt_state), loss, value

  def warmup_step(state, batch, info):
    del info
    ones = jnp.ones(batch.labels.shape)
    nets = []
    values = []
    for pair in state.nets:
      pair, _, value = update(pair, batch, ones)
      nets.append(pair)
      values.append(value)
    return state._replace(nets=tuple(nets)), {"train_loss": values[0]}

  def coteach_step(state, batch, info):
    del info
    keep = batch.labels.shape[0] // 2
    losses_ = [
        per_example_loss(net, net.params, batch)[0] for net, _ in state.nets
    ]
    # Network i's smallest-loss half teaches its peer 1 - i.
    chosen = [
        jnp.zeros(batch.labels.shape).at[jnp.argsort(l)[:keep]].set(1.0)
        for l in losses_
    ]
    pair0, _, value = update(state.nets[0], batch, chosen[1])
    pair1, _, _ = update(state.nets[1], batch, chosen[0])
    clean = (chosen[0] > 0)
    return (
        state._replace(
            nets=(pair0, pair1),
            times_selected=state.times_selected.at[batch.indices].add(
                clean.astype(jnp.int32)
            ),
        ),
        {"train_loss": value, "selected": clean},
    )

  def predict(state, images):
    net, _ = state.nets[0]
    return network.apply(net.params, net.batch_stats, images, train=False)[0]

  def end_epoch(state, epoch, view):
    del epoch
    preds = np.argmax(view.predict_train(state), -1)
    return state._replace(
        last_train_acc=jnp.float32(np.mean(preds == view.train_labels))
    )

  def report(state):
    return {
        "never_selected_ids": np.flatnonzero(np.asarray(state.times_selected) == 0),
        "last_train_acc": float(state.last_train_acc),
    }

  return methods.Method(
      init=init,
      train_step=coteach_step,
      predict=predict,
      phases=(methods.Phase("warmup", 1, warmup_step),),
      end_epoch=end_epoch,
      report=report,
  )


@pytest.fixture
def two_networks_registered(monkeypatch):
  entry = methods.Entry(
      "test-only: two networks teaching each other",
      {},
      make_two_networks,
  )
  monkeypatch.setitem(methods.REGISTRY, "two_networks", entry)


def test_phases_cover_the_epochs_in_order():
  step_a, step_b = (lambda *a: a), (lambda *a: a)
  method = methods.Method(
      init=None, train_step=step_b, predict=None,
      phases=(methods.Phase("warmup", 2, step_a),),
  )
  assert [method.phase_at(e)[0] for e in (1, 2, 3, 9)] == [
      "warmup", "warmup", "train", "train"
  ]
  assert method.phase_at(2)[1] is step_a and method.phase_at(3)[1] is step_b


def test_two_network_method_with_per_example_state(tmp_path, two_networks_registered):
  dataset = make_tiny_dataset()
  config = make_tiny_config(
      model="mlp", mlp_hidden=(16,), num_epochs=3, method="two_networks",
  )
  summary = train.train_and_evaluate(config, str(tmp_path / "full"), dataset)
  history = read_metrics(str(tmp_path / "full"))
  assert [r["phase"] for r in history] == ["warmup", "train", "train"]
  assert "selected_fraction" not in history[0]
  # The loop turns the step's `selected` mask into the selected fraction and
  # its label precision (measured against the clean labels it never shows).
  assert [r["selected_fraction"] for r in history[1:]] == [0.5, 0.5]
  for r in history[1:]:
    assert 0.0 <= r["label_precision"] <= 1.0
  assert summary["epochs"] == 3
  # The method's report: numbers inline, arrays as .npy beside the summary.
  report = summary["method_report"]
  assert report["never_selected_ids"] == "never_selected_ids.npy"
  ids = np.load(tmp_path / "full" / "never_selected_ids.npy")
  assert ids.ndim == 1 and np.all(np.diff(ids) > 0) and len(ids) < 144
  assert report["last_train_acc"] == pytest.approx(history[-1]["train_acc"])

  # Per-example state and the end-of-epoch hook survive a kill and resume.
  stopped = copy.deepcopy(config)
  stopped.stop_after_epochs = 2
  resumed_dir = str(tmp_path / "resumed")
  assert train.train_and_evaluate(stopped, resumed_dir, dataset) is None
  train.train_and_evaluate(config, resumed_dir, dataset)
  assert without_times(read_metrics(resumed_dir)) == without_times(history)


def test_epoch_means_of_a_selection():
  is_clean = jnp.array([True, False, True, True])
  totals = {}
  for selected in ([True, True, False, False], [True, False, True, False]):
    metrics = steps.additive_metrics(
        {"train_loss": jnp.float32(1.0), "selected": jnp.array(selected)},
        is_clean,
    )
    totals = jax.tree.map(jnp.add, totals, metrics) if totals else metrics
  means = steps.epoch_means(totals, steps=2, batch_size=4)
  assert means == {
      "train_loss": 1.0, "selected_fraction": 0.5, "label_precision": 0.75
  }


# ---------------------------------------------------------------------------
# The contract: every registered method
# ---------------------------------------------------------------------------


# The tiny dataset has 144 training examples: DMI's phase at its official
# batch of 256 would not fit.
_CONTRACT_ARGS = {"dmi": {"batch_size": 32}}


def _contract(method, workdir, dataset):
  config = make_tiny_config(
      model="mlp", mlp_hidden=(16,), num_epochs=2, method=method
  )
  config.method_args[method].update(_CONTRACT_ARGS.get(method, {}))
  full = train.train_and_evaluate(config, os.path.join(workdir, "full"), dataset)
  history = read_metrics(os.path.join(workdir, "full"))
  for record in history:
    for key, value in record.items():
      if isinstance(value, float):
        assert np.isfinite(value), (method, key)
  assert full["epochs"] == 2
  stopped = copy.deepcopy(config)
  stopped.stop_after_epochs = 1
  resumed_dir = os.path.join(workdir, "resumed")
  assert train.train_and_evaluate(stopped, resumed_dir, dataset) is None
  train.train_and_evaluate(config, resumed_dir, dataset)
  assert without_times(read_metrics(resumed_dir)) == without_times(history)
  return full


@pytest.mark.parametrize("method", sorted(methods.REGISTRY))
def test_contract(method, tmp_path):
  """jit, a bit-identical resume, data parallel over 2 devices.

  Runs where 2 devices exist; on a 1-device machine
  `test_contract_on_2_fake_devices` runs it in a subprocess.
  """
  if jax.device_count() < 2:
    pytest.skip("needs 2 devices: see test_contract_on_2_fake_devices")
  summary = _contract(method, str(tmp_path), make_tiny_dataset())
  assert summary["num_devices"] == jax.device_count()


def test_contract_on_2_fake_devices():
  """Every registered method's contract, in one process with 2 CPU devices."""
  if jax.device_count() >= 2:
    pytest.skip("test_contract runs in this process")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  result = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
       f"{__file__}::test_contract"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=1200,
  )
  assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
  assert f"{len(methods.REGISTRY)} passed" in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize(
    "method, fields, message",
    [
        ("dmi", {"args": {"batch_size": 8}}, "DMI needs batch_size >= num_classes"),
        ("dmi", {"num_epochs": 5, "args": {"ce_epochs": 5}},
         "ce_epochs=5 must be below num_epochs=5"),
        ("apl", {"dataset": "food101"}, "APL has no official alpha/beta"),
        ("coteaching_plus", {"dataset": "food101"}, "no init_epoch for 'food101'"),
        ("forward", {"noise_type": "instance", "args": {"transition": "oracle"}},
         "transition='oracle' needs a class-level transition matrix"),
        ("forward", {"num_epochs": 3, "args": {"warmup_epochs": 4}},
         "warmup_epochs=4 must be below num_epochs=3"),
        ("t_revision", {"num_epochs": 5, "args": {"warmup_epochs": 2, "revision_epochs": 4}},
         "warmup_epochs=2 \\+ revision_epochs=4 exceed num_epochs=5"),
        ("t_revision", {"args": {"revision_epochs": 0}},
         "revision_epochs=0: expected an integer >= 1"),
        ("cdr_ref", {"num_epochs": 3, "args": {"tau_source": "anchor", "warmup_epochs": 3}},
         "warmup_epochs=3 must be in \\[1, num_epochs=3\\)"),
        ("cdr_paper", {"args": {"warmup_epochs": 2}},
         "warmup_epochs=2 applies only to an estimated rate"),
        ("coteaching", {"args": {"warmup_epochs": 2}},
         "warmup_epochs=2 applies only to an estimated rate"),
        ("gce", {"num_epochs": 30, "args": {"truncated": True}},
         "prune_start_epoch=40 is after the last epoch \\(30\\)"),
        ("joint", {"num_epochs": 5, "args": {"first_stage_epochs": 6}},
         "first_stage_epochs=6 exceeds num_epochs=5"),
        ("joint", {"args": {"first_stage_epochs": 4, "begin_epoch": 5}},
         "begin_epoch=5 is after stage 1 \\(4 epochs\\)"),
    ],
)
def test_config_dependent_mistakes_are_found_before_any_data_loads(
    method, fields, message
):
  from experiments import run_config  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.method = method
  fields = dict(fields)
  for field, value in fields.pop("args", {}).items():
    config.method_args[method][field] = value
  for field, value in fields.items():
    config[field] = value
  with pytest.raises(ValueError, match=message):
    run_config.validate(config)
  # The method with its defaults and the default protocol is fine.
  fine = default.get_config()
  fine.method = method
  run_config.validate(fine)


def test_a_run_saved_before_a_method_argument_existed_is_the_same_run():
  from experiments import run_config  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.method = "cdr_ref"
  saved = run_config.as_dict(config)
  assert run_config.differences(saved, config) == []
  del saved["method_args"]["tau_source"]  # as saved before tau_source existed
  assert run_config.differences(saved, config) == []
  config.method_args.cdr_ref.tau_source = "anchor"  # not the former behaviour
  # The message compares it with the default it stood for.
  (message,) = run_config.differences(saved, config)
  before, after = message.split(" -> ")
  assert before.startswith("method_args:") and "'tau_source': 'oracle'" in before
  assert "'tau_source': 'anchor'" in after
