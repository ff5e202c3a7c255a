"""optax_cdr.cdr against the NumPy reference, and its place in the Optax world."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st

import optax_cdr
import cdr_reference

JIT = pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])


def _random_tree(seed, *, zeros=0.0, ties=False, dtype=np.float32):
  """Dense, conv and bias leaves; optionally many zeros and tied scores."""
  rng = np.random.default_rng(seed)
  shapes = {"dense": (17, 9), "conv": (3, 3, 4, 5), "bias": (9,),
            "nested": {"kernel": (6, 7), "scale": (7,)}}
  def leaf(shape):
    x = rng.standard_normal(shape).astype(np.float32)
    if ties:  # few distinct magnitudes -> many equal |g * w|
      x = np.sign(x) * rng.integers(1, 4, shape).astype(np.float32)
    x[rng.random(shape) < zeros] = 0.0
    return x.astype(dtype)
  params = jax.tree.map(leaf, shapes, is_leaf=lambda s: isinstance(s, tuple))
  grads = jax.tree.map(leaf, shapes, is_leaf=lambda s: isinstance(s, tuple))
  return params, grads


def _ranked(params):
  return [np.ndim(p) >= 2 for p in jax.tree.leaves(params)]


def _apply(tx, grads, params, jit):
  update = jax.jit(tx.update) if jit else tx.update
  return update(grads, tx.init(params), params)


def _check_against_reference(grads, params, tau, lam, jit, **kwargs):
  tx = optax_cdr.cdr(tau, lam, **kwargs)
  updates, state = _apply(tx, grads, params, jit)
  ref_kwargs = {k: v for k, v in kwargs.items() if k != "method"}
  ref_updates, ref_masks, t, num_critical, m = cdr_reference.cdr_update(
      jax.tree.leaves(grads), jax.tree.leaves(params), _ranked(params),
      tau, lam, **ref_kwargs)
  assert float(state.threshold) == float(t)
  assert int(state.num_critical) == num_critical
  assert int(state.num_ranked) == m
  for u, r in zip(jax.tree.leaves(updates), ref_updates):
    assert u.dtype == r.dtype
    np.testing.assert_allclose(np.asarray(u, np.float32),
                               np.asarray(r, np.float32), rtol=1e-6, atol=1e-7)
  masks = optax_cdr.critical_mask(grads, params, tau)
  for got, want in zip(jax.tree.leaves(masks), ref_masks):
    np.testing.assert_array_equal(np.asarray(got), want)
  return updates, state


@JIT
@pytest.mark.parametrize("method", ["radix", "bisection"])
@pytest.mark.parametrize("tau", [0.0, 0.2, 0.45, 0.8, 1.0])
@pytest.mark.parametrize("case", ["random", "zeros", "ties"])
def test_matches_numpy_reference(jit, method, tau, case):
  params, grads = _random_tree(
      seed=hash((case, tau)) % 2**32, zeros=0.6 if case == "zeros" else 0.0,
      ties=case == "ties")
  _check_against_reference(grads, params, tau, 1e-3, jit, method=method)


@JIT
@pytest.mark.parametrize("regularizer", ["l1", "l2"])
def test_regularizers_and_critical_scale(jit, regularizer):
  params, grads = _random_tree(1)
  _check_against_reference(grads, params, 0.3, 0.05, jit,
                           regularizer=regularizer, critical_scale=1.0)


def test_k_zero_and_k_equal_m():
  params, grads = _random_tree(2)
  m = sum(p.size for p in jax.tree.leaves(params) if p.ndim >= 2)
  _, state = _check_against_reference(grads, params, 1.0, 0.0, jit=True)
  assert int(state.num_critical) == 0 and float(state.threshold) == np.inf
  _, state = _check_against_reference(grads, params, 0.0, 0.0, jit=True)
  assert int(state.num_critical) == m
  # tau = 1 - 1/m keeps exactly one score: the largest.
  updates, state = _check_against_reference(grads, params, 1 - 1 / m - 1e-12,
                                            0.0, jit=True)
  assert int(state.num_critical) == 1


def test_paper_update_with_sgd():
  """w <- w - lr((1 - tau) g [critical] + lam sign(w)) on ranked leaves."""
  params, grads = _random_tree(3)
  tau, lam, lr = 0.4, 1e-2, 0.1
  tx = optax.chain(optax_cdr.cdr(tau, lam), optax.sgd(lr))
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  new_params = optax.apply_updates(params, updates)
  masks = optax_cdr.critical_mask(grads, params, tau)
  for w, g, c, w1 in zip(*map(jax.tree.leaves, (params, grads, masks,
                                                 new_params))):
    if w.ndim >= 2:
      want = w - lr * ((1 - tau) * g * c + lam * np.sign(w))
    else:
      want = w - lr * g
    np.testing.assert_allclose(w1, want, rtol=1e-5, atol=1e-6)


def test_biases_pass_through_and_stay_trainable():
  params = {"w": jnp.ones((4, 4)), "b": jnp.zeros(4)}
  grads = {"w": jnp.ones((4, 4)), "b": jnp.full(4, 0.5)}
  updates, _ = _apply(optax_cdr.cdr(0.5, 0.1), grads, params, jit=True)
  np.testing.assert_array_equal(updates["b"], grads["b"])


def test_custom_mask_tree_and_callable():
  params, grads = _random_tree(4)
  mask = jax.tree.map(lambda p: p.ndim == 2, params)  # dense only, not conv
  for m in (mask, lambda p: jax.tree.map(lambda x: x.ndim == 2, p)):
    updates, state = _apply(optax_cdr.cdr(0.5, 0.0, mask=m), grads, params,
                            jit=True)
    np.testing.assert_array_equal(updates["conv"], grads["conv"])
    assert int(state.num_ranked) == 17 * 9 + 6 * 7


@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=4),
    tau=st.floats(0.0, 1.0),
    levels=st.integers(1, 50),
    zero_frac=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**31),
)
@settings(max_examples=60, deadline=None)
def test_property_matches_reference(sizes, tau, levels, zero_frac, seed):
  rng = np.random.default_rng(seed)
  params = [rng.integers(-levels, levels + 1, (s, 3)).astype(np.float32)
            for s in sizes]
  grads = [rng.standard_normal((s, 3)).astype(np.float32) for s in sizes]
  for p in params:
    p[rng.random(p.shape) < zero_frac] = 0
  _, masks, t, num_critical, m = cdr_reference.cdr_update(
      grads, params, [True] * len(sizes), tau, 0.0)
  got = optax_cdr.critical_mask(grads, params, tau)
  for a, b in zip(got, masks):
    np.testing.assert_array_equal(np.asarray(a), b)
  k = cdr_reference.keep_count(tau, m, python_tau=True)
  assert num_critical >= k  # ties at the threshold are kept
  assert sum(int(np.sum(a)) for a in got) == num_critical


@given(tau=st.floats(0.0, 1.0, width=32), m=st.integers(0, 2**32 - 1))
@settings(max_examples=300, deadline=None)
def test_keep_count_is_exact_for_float32_tau(tau, m):
  got = int(jax.jit(optax_cdr.keep_count)(np.float32(tau), np.uint32(m)))
  assert got == cdr_reference.keep_count(tau, m, python_tau=False)


def test_python_tau_keeps_reference_codes_count():
  # float32(0.2) = 0.2000000030 would keep 7 of 10; the reference code keeps 8.
  params = [np.arange(1, 11, dtype=np.float32).reshape(2, 5)]
  grads = [np.ones((2, 5), np.float32)]
  _, state = _apply(optax_cdr.cdr(0.2, 0.0), grads, params, jit=True)
  assert int(state.num_critical) == 8
  assert int(optax_cdr.keep_count(np.float32(0.2), 10)) == 7


def test_nonfinite_scores_are_not_ranked_and_propagate():
  params, grads = _random_tree(5)
  bad = dict(grads)
  bad["dense"] = grads["dense"].copy()
  bad["dense"][0, :3] = [np.nan, np.inf, -np.inf]
  tx = optax_cdr.cdr(0.3, 0.0)
  updates, state = _apply(tx, bad, params, jit=True)
  _, ref_masks, t, num_critical, m = cdr_reference.cdr_update(
      jax.tree.leaves(bad), jax.tree.leaves(params), _ranked(params), 0.3, 0.0)
  assert int(state.num_ranked) == m == sum(
      p.size for p in jax.tree.leaves(params) if p.ndim >= 2) - 3
  assert float(state.threshold) == t and int(state.num_critical) == num_critical
  # The finite entries are split as if the bad ones were not there.
  clean = dict(grads)
  clean["dense"] = grads["dense"].copy()
  clean["dense"][0, :3] = 0.0
  clean["dense"] = np.delete(clean["dense"].ravel(), [0, 1, 2])
  clean_params = dict(params)
  clean_params["dense"] = np.delete(params["dense"].ravel(), [0, 1, 2])
  clean_params["dense"] = clean_params["dense"].reshape(-1, 1)
  clean["dense"] = clean["dense"].reshape(-1, 1)
  _, clean_state = _apply(tx, clean, clean_params, jit=True)
  assert float(clean_state.threshold) == float(state.threshold)
  # NaN/inf are not hidden: they reach the update.
  assert np.isnan(updates["dense"][0, 0]) and np.isinf(updates["dense"][0, 1])
  # ... and optax.apply_if_finite skips the step.
  safe = optax.apply_if_finite(optax.chain(tx, optax.sgd(0.1)), 3)
  updates, _ = jax.jit(safe.update)(bad, safe.init(params), params)
  assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates))


def test_all_nonfinite_does_not_hang():
  params = [np.ones((3, 3), np.float32)]
  grads = [np.full((3, 3), np.nan, np.float32)]
  updates, state = _apply(optax_cdr.cdr(0.5, 0.0), grads, params, jit=True)
  assert int(state.num_ranked) == 0 and int(state.num_critical) == 0
  assert bool(jnp.all(jnp.isnan(updates[0])))


@JIT
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_dtypes_preserved_and_matching(jit, dtype):
  params, grads = _random_tree(6, dtype=np.float32)
  params = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)
  grads = jax.tree.map(lambda x: jnp.asarray(x, dtype), grads)
  np_params = jax.tree.map(lambda x: np.asarray(x.astype(jnp.float32)), params)
  np_grads = jax.tree.map(lambda x: np.asarray(x.astype(jnp.float32)), grads)
  tx = optax_cdr.cdr(0.3, 1e-3)
  updates, state = _apply(tx, grads, params, jit)
  chex.assert_trees_all_equal_dtypes(updates, grads)
  _, ref_masks, t, num_critical, _ = cdr_reference.cdr_update(
      jax.tree.leaves(np_grads), jax.tree.leaves(np_params), _ranked(params),
      0.3, 1e-3)
  assert float(state.threshold) == float(t)
  assert int(state.num_critical) == num_critical
  masks = optax_cdr.critical_mask(grads, params, 0.3)
  for got, want in zip(jax.tree.leaves(masks), ref_masks):
    np.testing.assert_array_equal(np.asarray(got), want)


@JIT
def test_schedules(jit):
  params, grads = _random_tree(7)
  tau = optax.linear_schedule(0.0, 0.5, 4)
  lam = optax.constant_schedule(1e-3)
  tx = optax_cdr.cdr(tau, lam)
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  for step in range(5):
    updates, state = update(grads, state, params)
    want = cdr_reference.cdr_update(
        jax.tree.leaves(grads), jax.tree.leaves(params), _ranked(params),
        np.float32(tau(step)), 1e-3, python_tau=False)
    assert int(state.num_critical) == want[3], step
    assert int(state.count) == step + 1


@JIT
def test_inject_hyperparams(jit):
  params, grads = _random_tree(8)
  tx = optax.inject_hyperparams(optax_cdr.cdr)(tau=0.25, lam=1e-3)
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  updates, state = update(grads, state, params)
  want = cdr_reference.cdr_update(
      jax.tree.leaves(grads), jax.tree.leaves(params), _ranked(params),
      np.float32(0.25), 1e-3, python_tau=False)
  for u, r in zip(jax.tree.leaves(updates), want[0]):
    np.testing.assert_allclose(u, r, rtol=1e-6, atol=1e-7)
  state.hyperparams["tau"] = jnp.asarray(0.75)
  updates, state = update(grads, state, params)
  want = cdr_reference.cdr_update(
      jax.tree.leaves(grads), jax.tree.leaves(params), _ranked(params),
      np.float32(0.75), 1e-3, python_tau=False)
  for u, r in zip(jax.tree.leaves(updates), want[0]):
    np.testing.assert_allclose(u, r, rtol=1e-6, atol=1e-7)


def test_traced_bad_hyperparams_poison_ranked_updates():
  params, grads = _random_tree(9)
  tx = optax.inject_hyperparams(optax_cdr.cdr)(tau=0.25, lam=1e-3)
  state = tx.init(params)
  state.hyperparams["tau"] = jnp.asarray(1.5)
  updates, _ = jax.jit(tx.update)(grads, state, params)
  assert bool(jnp.all(jnp.isnan(updates["dense"])))
  np.testing.assert_array_equal(updates["bias"], grads["bias"])
  with pytest.raises(ValueError, match="tau must be in"):
    tx.update(grads, state, params)  # concrete: a clear error


def test_state_is_stable_across_steps():
  params, grads = _random_tree(10)
  tx = optax_cdr.cdr(0.3, 1e-3)
  state = tx.init(params)
  new_state = jax.jit(tx.update)(grads, state, params)[1]
  chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
  assert isinstance(new_state, optax_cdr.CDRState)


def test_extra_args_accepted():
  params, grads = _random_tree(11)
  tx = optax.chain(optax_cdr.cdr(0.3, 0.0), optax.sgd(0.1))
  tx.update(grads, tx.init(params), params, value=jnp.ones(()), key=None)


def test_multi_steps():
  params, grads = _random_tree(12)
  inner = optax.chain(optax_cdr.cdr(0.3, 1e-3), optax.sgd(0.1))
  tx = optax.MultiSteps(inner, every_k_schedule=2)
  state = tx.init(params)
  update = jax.jit(tx.update)
  u1, state = update(grads, state, params)
  assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(u1))
  u2, state = update(grads, state, params)
  want, _ = inner.update(grads, inner.init(params), params)
  chex.assert_trees_all_close(u2, want, rtol=1e-6)


def test_chain_with_adam_and_optimizer_state():
  params, grads = _random_tree(13)
  tx = optax.chain(optax_cdr.cdr(0.5, 0.0), optax.adam(1e-3))
  updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
  masks = optax_cdr.critical_mask(grads, params, 0.5)
  # Adam moves only the critical entries of ranked leaves (zero grad -> 0 step).
  for u, c, p in zip(*map(jax.tree.leaves, (updates, masks, params))):
    if p.ndim >= 2:
      assert bool(jnp.all((u != 0) == c))
  assert optax.tree_utils.tree_get(state, "num_critical") is not None


def test_flax_nnx_optimizer():
  from flax import nnx
  model = nnx.Sequential(nnx.Linear(8, 16, rngs=nnx.Rngs(0)), nnx.relu,
                         nnx.Linear(16, 3, rngs=nnx.Rngs(1)))
  tx = optax.chain(optax_cdr.cdr(0.5, 1e-3), optax.sgd(0.1, momentum=0.9))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  x = jnp.ones((4, 8))
  y = jnp.array([0, 1, 2, 0])

  @nnx.jit
  def step(model, optimizer):
    def loss_fn(model):
      logits = model(x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(step(model, optimizer)) for _ in range(20)]
  assert losses[-1] < losses[0]
  state = optax.tree_utils.tree_get(optimizer.opt_state, "num_ranked")
  assert int(state) == 8 * 16 + 16 * 3


def test_flax_linen_train_state():
  import flax.linen as nn
  from flax.training import train_state

  model = nn.Dense(3)
  params = model.init(jax.random.key(0), jnp.ones((1, 5)))["params"]
  state = train_state.TrainState.create(
      apply_fn=model.apply, params=params,
      tx=optax.chain(optax_cdr.cdr(0.5, 0.0), optax.sgd(0.1)))
  x, y = jnp.ones((4, 5)), jnp.array([0, 1, 2, 0])

  def loss_fn(p):
    logits = state.apply_fn({"params": p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  grads = jax.grad(loss_fn)(state.params)
  new_state = jax.jit(lambda s, g: s.apply_gradients(grads=g))(state, grads)
  masks = optax_cdr.critical_mask(grads, state.params, 0.5)
  moved = new_state.params["kernel"] != state.params["kernel"]
  np.testing.assert_array_equal(moved, masks["kernel"])
  assert int(masks["kernel"].sum()) == 7  # floor(0.5 * 15); no ties here


@pytest.mark.parametrize("tau", [-0.1, 1.5, float("nan"), float("inf")])
def test_bad_tau(tau):
  with pytest.raises(ValueError, match="tau must be in"):
    optax_cdr.cdr(tau, 0.0)
  with pytest.raises(ValueError, match="tau must be in"):
    optax_cdr.critical_mask([jnp.ones((2, 2))], [jnp.ones((2, 2))], tau)


def test_bad_tau_from_schedule_raises_eagerly():
  params, grads = _random_tree(14)
  tx = optax_cdr.cdr(lambda count: 2.0, 0.0)
  with pytest.raises(ValueError, match="tau must be in"):
    tx.update(grads, tx.init(params), params)


@pytest.mark.parametrize("lam", [-1e-3, float("nan")])
def test_bad_lam(lam):
  with pytest.raises(ValueError, match="lam must be in"):
    optax_cdr.cdr(0.2, lam)


def test_bad_regularizer_and_method():
  with pytest.raises(ValueError, match="regularizer"):
    optax_cdr.cdr(0.2, 0.0, regularizer="l3")
  with pytest.raises(ValueError, match="method"):
    optax_cdr.cdr(0.2, 0.0, method="sort")


def test_missing_params():
  params, grads = _random_tree(15)
  tx = optax_cdr.cdr(0.2, 0.0)
  with pytest.raises(ValueError, match="requires the current value of parameters"):
    tx.update(grads, tx.init(params))


def test_mismatched_trees():
  params, grads = _random_tree(16)
  tx = optax_cdr.cdr(0.2, 0.0)
  del grads["bias"]
  with pytest.raises(ValueError, match="same tree structure"):
    tx.update(grads, tx.init(params), params)
  params2, grads2 = _random_tree(16)
  grads2["dense"] = grads2["dense"][:3]
  with pytest.raises(ValueError, match="does not match its parameter"):
    tx.update(grads2, tx.init(params2), params2)


def test_mask_selecting_nothing():
  params, grads = _random_tree(17)
  tx = optax_cdr.cdr(0.2, 0.0, mask=lambda p: jax.tree.map(lambda _: False, p))
  with pytest.raises(ValueError, match="selects no parameter"):
    tx.update(grads, tx.init(params), params)
  only_biases = {"b": jnp.zeros(3)}
  tx = optax_cdr.cdr(0.2, 0.0)
  with pytest.raises(ValueError, match="selects no parameter"):
    tx.update(only_biases, tx.init(only_biases), only_biases)


def test_mask_with_wrong_structure():
  params, grads = _random_tree(18)
  tx = optax_cdr.cdr(0.2, 0.0, mask={"dense": True})
  with pytest.raises(ValueError, match="mask must have the structure"):
    tx.update(grads, params, params)


def test_integer_leaves():
  params = {"w": jnp.ones((3, 3), jnp.int32), "v": jnp.ones((3, 3))}
  tx = optax_cdr.cdr(0.2, 0.0)
  with pytest.raises(TypeError, match="must be floating point"):
    tx.update(params, tx.init(params), params)
  # Excluding them with the mask works.
  tx = optax_cdr.cdr(0.2, 0.0, mask={"w": False, "v": True})
  tx.update(params, tx.init(params), params)


@pytest.mark.parametrize("name", ["tau", "lam", "critical_scale"])
@pytest.mark.parametrize("bad", ["0.2", None, True, 1j, np.array(["a"]),
                                 np.array([True])],
                         ids=["str", "None", "bool", "complex", "str_array",
                              "bool_array"])
def test_non_numeric_hyperparameters_rejected_when_built(name, bad):
  if name == "critical_scale" and bad is None:
    pytest.skip("critical_scale=None means 1 - tau")
  kwargs = {"tau": 0.2, "lam": 1e-3, name: bad}
  with pytest.raises(TypeError, match=f"^{name} must be a real number"):
    optax_cdr.cdr(**kwargs)


def test_non_numeric_tau_rejected_by_critical_mask():
  with pytest.raises(TypeError, match="^tau must be a real number"):
    optax_cdr.critical_mask([jnp.ones((2, 2))], [jnp.ones((2, 2))], "0.5")


@pytest.mark.parametrize("good", [0, 1, np.float32(0.5), np.int64(0),
                                  jnp.asarray(0.25), np.asarray(0.5)])
def test_numeric_hyperparameters_accepted(good):
  params, grads = _random_tree(19)
  tx = optax_cdr.cdr(good, good, critical_scale=good)
  tx.update(grads, tx.init(params), params)


def test_schedule_returning_a_string_is_rejected_when_applied():
  params, grads = _random_tree(20)
  tx = optax_cdr.cdr(0.2, lambda count: "0.001")
  with pytest.raises(TypeError, match="^lam must be a real number"):
    tx.update(grads, tx.init(params), params)
