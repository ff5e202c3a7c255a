"""kth_largest: exact on any pytree, both strategies, sharded or not."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import optax_cdr

METHODS = pytest.mark.parametrize("method", ["radix", "bisection"])


def _expected(leaves, k):
  flat = np.concatenate([np.ravel(x) for x in leaves]).astype(np.float32)
  flat = flat[np.isfinite(flat)]
  k = min(max(k, 0), flat.size)
  value = np.inf if k == 0 else np.sort(flat)[::-1][k - 1]
  return value, int((flat >= value).sum()), flat.size


@METHODS
@given(
    data=st.lists(
        st.lists(st.one_of(st.floats(0, width=32), st.just(float("nan")),
                           st.sampled_from([0.0, 1.0, 2.0])),
                 min_size=1, max_size=30),
        min_size=1, max_size=4),
    k=st.integers(-2, 130),
)
@settings(max_examples=80, deadline=None)
def test_matches_sort(method, data, k):
  leaves = [np.asarray(x, np.float32) for x in data]
  got = optax_cdr.kth_largest(leaves, k, method=method)
  value, num_at_least, m = _expected(leaves, k)
  assert float(got.value) == value
  assert int(got.num_at_least) == num_at_least
  assert int(got.num_finite) == m


@METHODS
def test_traced_k_and_callable_k(method):
  rng = np.random.default_rng(0)
  leaves = {"a": rng.random((50, 4), np.float32), "b": rng.random(7, np.float32)}
  f = jax.jit(lambda s, k: optax_cdr.kth_largest(s, k, method=method).value)
  for k in (1, 100, 207):
    assert float(f(leaves, k)) == _expected(jax.tree.leaves(leaves), k)[0]
  half = optax_cdr.kth_largest(leaves, lambda m: m // 2, method=method)
  assert float(half.value) == _expected(jax.tree.leaves(leaves), 103)[0]


@METHODS
def test_zeros_negative_zero_nan_inf_and_subnormal_bits(method):
  x = np.array([0.0, -0.0, np.nan, np.inf, 3.0, 1e-45, 2.0, -np.nan],
               np.float32)
  got = optax_cdr.kth_largest([x], 3, method=method)
  # Finite: 3, 2, 1e-45, 0, 0 -> third largest is the subnormal's bit pattern.
  assert int(got.num_finite) == 5
  assert np.float32(got.value) == np.float32(1e-45)
  assert int(got.num_at_least) == 3
  got = optax_cdr.kth_largest([x], 5, method=method)
  assert float(got.value) == 0.0 and int(got.num_at_least) == 5


def test_methods_agree_on_wide_range():
  rng = np.random.default_rng(1)
  x = (rng.lognormal(0, 8, 100_000)).astype(np.float32)
  for k in (1, 5_000, 80_000, 100_000):
    r = optax_cdr.kth_largest([x], k, method="radix")
    b = optax_cdr.kth_largest([x], k, method="bisection")
    assert float(r.value) == float(b.value) == _expected([x], k)[0]


def test_bad_inputs():
  with pytest.raises(ValueError, match="Unknown selection method"):
    optax_cdr.kth_largest([jnp.ones(3)], 1, method="sort")
  with pytest.raises(ValueError, match="at least one array"):
    optax_cdr.kth_largest([], 1)
  with pytest.raises(TypeError, match="floating point"):
    optax_cdr.kth_largest([jnp.ones(3, jnp.int32)], 1)


_SHARDED_SCRIPT = textwrap.dedent("""
    import re
    import jax, jax.numpy as jnp, numpy as np, optax, optax_cdr
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    assert jax.device_count() == 8
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((64, 24)).astype(np.float32),
              "conv": rng.standard_normal((3, 3, 8, 16)).astype(np.float32),
              "b": rng.standard_normal(24).astype(np.float32)}
    grads = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(np.float32), params)
    specs = {"w": P("x", None), "conv": P(None, None, None, "x"), "b": P("x")}
    for axis_type in (AxisType.Explicit, AxisType.Auto):
      mesh = jax.make_mesh((8,), ("x",), axis_types=(axis_type,))
      put = lambda t: jax.tree.map(lambda a, s: jax.device_put(a, NamedSharding(mesh, s)), t, specs)
      for method in ("radix", "bisection"):
        tx = optax.chain(optax_cdr.cdr(0.3, 1e-3, method=method), optax.sgd(0.1))
        state = tx.init(params)
        update = jax.jit(tx.update)
        want, want_state = update(grads, state, params)
        got, got_state = update(put(grads), state, put(params))
        for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
          np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert int(want_state[0].num_critical) == int(got_state[0].num_critical)
        assert got["w"].sharding.spec[0] == "x", got["w"].sharding
        hlo = update.lower(put(grads), state, put(params)).compile().as_text()
        assert "all-gather" not in hlo and "all-to-all" not in hlo, method
        # Only the histograms / counts cross devices, never the scores.
        for shape in re.findall(r"= ([a-z0-9]+\\[[0-9,]*\\])[^\\n]*? all-reduce\\(", hlo):
          size = int(np.prod([int(d) for d in re.findall(r"[0-9]+", shape.split("[")[1]) or [1]]))
          assert size <= 65536, shape
    print("SHARDED-OK")
""")


def test_sharded_params_on_8_devices_match_unsharded():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT], env=env,
                       capture_output=True, text=True, timeout=600)
  assert "SHARDED-OK" in out.stdout, out.stderr[-3000:]


# On CPU each pass walks leaves in chunks of 2**18, then 2**14 scores. Small
# chunks run that path (both chunk sizes and a remainder) on small inputs.
@pytest.fixture
def small_chunks(monkeypatch):
  from optax_cdr import _selection
  monkeypatch.setattr(_selection, "_CHUNKS", (1000, 64))


@METHODS
def test_chunked_passes_with_ties_nonfinite_and_several_leaves(
    small_chunks, method):
  rng = np.random.default_rng(4)
  leaves = [rng.integers(0, 4, (70, 53)).astype(np.float32),  # heavy ties
            np.abs(rng.standard_normal(12_345)).astype(np.float32),
            np.abs(rng.standard_normal((3, 3, 16, 32))).astype(np.float32),
            np.abs(rng.standard_normal(999)).astype(np.float32)]  # one-shot
  leaves[1][::97] = np.nan
  leaves[2][0, 0, 0, :5] = np.inf
  f = jax.jit(lambda s, k: optax_cdr.kth_largest(s, k, method=method))
  for k in (0, 1, 100, 3_000, 5_000, 9_000, 20_000, 30_000):
    got = f(leaves, k)
    value, num_at_least, m = _expected(leaves, k)
    assert float(got.value) == value, k
    assert int(got.num_at_least) == num_at_least, k
    assert int(got.num_finite) == m


def test_chunked_passes_with_callable_k_and_cdr(small_chunks):
  rng = np.random.default_rng(5)
  params = {"w": rng.standard_normal((300, 200)).astype(np.float32),
            "b": rng.standard_normal(200).astype(np.float32)}
  grads = jax.tree.map(
      lambda p: rng.standard_normal(p.shape).astype(np.float32), params)
  scores = np.abs(grads["w"] * params["w"])
  r = optax_cdr.kth_largest([scores], lambda m: m // 3, method="radix")
  assert float(r.value) == _expected([scores], 20_000)[0]
  tx = optax_cdr.cdr(0.3, 0.0, method="radix")
  _, state = jax.jit(tx.update)(grads, tx.init(params), params)
  value, num_at_least, _ = _expected([scores], int((1.0 - 0.3) * scores.size))
  assert float(state.threshold) == value
  assert int(state.num_critical) == num_at_least


@METHODS
def test_vmap_over_runs_matches_each_run(small_chunks, method):
  """Several runs in one program: vmap over scores, over k, and nested."""
  rng = np.random.default_rng(6)
  runs = [rng.integers(0, 50, (4, 2500)).astype(np.float32),  # ties
          np.abs(rng.standard_normal((4, 37, 11))).astype(np.float32)]
  runs[0][1, ::31] = np.nan
  ks = np.array([0, 1, 1_500, 2_907], np.int32)
  kth = lambda s, k: optax_cdr.kth_largest(s, k, method=method)
  def check(got, i, k):
    value, num_at_least, m = _expected([r[i] for r in runs], k)
    assert float(got.value[i]) == value, (i, k)
    assert int(got.num_at_least[i]) == num_at_least, (i, k)
    assert int(got.num_finite[i]) == m, (i, k)
  both = jax.jit(jax.vmap(kth))(runs, ks)
  only_scores = jax.jit(jax.vmap(kth, (0, None)))(runs, 1_000)
  only_k = jax.jit(jax.vmap(kth, (None, 0)))([r[2] for r in runs], ks)
  for i, k in enumerate(ks):
    check(both, i, int(k))
    check(only_scores, i, 1_000)
    value, _, _ = _expected([r[2] for r in runs], int(k))
    assert float(only_k.value[i]) == value
  nested = jax.jit(jax.vmap(jax.vmap(kth, (0, None)), (0, None)))(
      [r.reshape(2, 2, *r.shape[1:]) for r in runs], 700)
  for i in range(4):
    value, num_at_least, _ = _expected([r[i] for r in runs], 700)
    assert float(nested.value.reshape(-1)[i]) == value
    assert int(nested.num_at_least.reshape(-1)[i]) == num_at_least


def test_cdr_update_stores_no_scores():
  """The temporary memory of a jitted update stays below 4 bytes per entry.

  |g * w| is recomputed inside each pass and the passes walk the leaves in
  chunks, so no m-sized array of scores or bin indices is ever stored.
  """
  if jax.default_backend() != "cpu" or jax.device_count() != 1:
    pytest.skip("chunked passes: one CPU device")
  params = {"w": jnp.ones((1024, 1024)), "v": jnp.ones((512, 1000))}
  tx = optax_cdr.cdr(0.2, 1e-3)
  update = jax.jit(tx.update).lower(params, tx.init(params), params)
  analysis = update.compile().memory_analysis()
  if analysis is None:
    pytest.skip("no memory analysis on this backend")
  num_ranked = 1024 * 1024 + 512 * 1000
  assert analysis.temp_size_in_bytes <= 4 * num_ranked
