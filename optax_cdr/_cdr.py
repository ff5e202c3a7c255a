"""CDR: critical-parameter gradient selection with shrinkage, as an Optax transform."""

import numbers
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_cdr import _keep_count
from optax_cdr import _selection

MaskOrFn = Union[Any, Callable[[optax.Params], Any]]

_REGULARIZERS = ("l1", "l2")
# Optax's wording, so users see the message they know.
_NO_PARAMS_MSG = (
    "You are using a transformation that requires the current value of "
    "parameters, but you are not passing `params` when calling `update`."
)


class CDRState(NamedTuple):
  """State of `cdr`: a step counter and diagnostics of the last step.

  Attributes:
    count: number of updates so far (int32), for schedules.
    threshold: score threshold of the last step; ranked entries with
      |g * w| >= threshold were critical (float32, +inf if none).
    num_critical: number of critical entries in the last step (uint32).
    num_ranked: number of ranked entries with a finite score in the last step
      (uint32); the `m` that k was taken from.
  """

  count: jax.Array
  threshold: jax.Array
  num_critical: jax.Array
  num_ranked: jax.Array


def default_mask(params: optax.Params) -> Any:
  """Rank the leaves with ndim >= 2 (dense and conv kernels), as the paper's code.

  A zero-initialized bias has score |g * 0| = 0: it would never be critical,
  never get a gradient, and stay at zero forever. Biases and normalization
  parameters therefore keep their full gradient.
  """
  return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def _mask_tree(mask, params):
  if mask is None:
    mask = default_mask
  return mask(params) if callable(mask) else mask


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _check_number(name: str, value):
  """Raises TypeError unless value is a real number, a real array or traced.

  Checked when the transform is built: a string or None would otherwise only
  fail at the first update, with an error that does not name the argument.
  bool is rejected too: `tau=True` is a mistake, not the number 1.
  """
  if isinstance(value, jax.core.Tracer):
    return
  if isinstance(value, numbers.Real) and not isinstance(value, bool):
    return
  dtype = getattr(value, "dtype", None)
  if (isinstance(value, (np.ndarray, np.generic, jax.Array))
      and (jnp.issubdtype(dtype, jnp.integer)
           or jnp.issubdtype(dtype, jnp.floating))):
    return
  raise TypeError(
      f"{name} must be a real number, a real scalar array or a schedule "
      f"(a callable of the step count), got {value!r} of type "
      f"{type(value).__name__}."
  )


def _check_scalar(name: str, value, low: float, high: float):
  """Raises for a non-number, or a concrete value outside [low, high] (NaN too)."""
  if callable(value):
    return
  _check_number(name, value)
  if not _is_concrete(value):
    return
  if jnp.ndim(value) != 0:
    raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}.")
  v = float(value)
  if not low <= v <= high:  # also rejects NaN
    raise ValueError(f"{name} must be in [{low}, {high}], got {v}.")


def _ranked_pairs(updates, params, mask):
  """Checks the trees and returns the mask and the (update, param) leaves ranked."""
  if params is None:
    raise ValueError(_NO_PARAMS_MSG)
  updates_def = jax.tree.structure(updates)
  params_def = jax.tree.structure(params)
  if updates_def != params_def:
    raise ValueError(
        "cdr: updates and params must have the same tree structure, got "
        f"{updates_def} and {params_def}."
    )
  mask_tree = _mask_tree(mask, params)
  try:
    flat_mask = updates_def.flatten_up_to(mask_tree)
  except (ValueError, TypeError) as e:
    raise ValueError(
        f"cdr: the mask must have the structure of params ({params_def}), "
        f"got {jax.tree.structure(mask_tree)}."
    ) from e
  flat_updates = jax.tree.leaves(updates)
  flat_params = jax.tree.leaves(params)
  for g, w, ranked in zip(flat_updates, flat_params, flat_mask):
    if jnp.shape(g) != jnp.shape(w):
      raise ValueError(
          f"cdr: an update of shape {jnp.shape(g)} does not match its "
          f"parameter of shape {jnp.shape(w)}."
      )
    if ranked and not (
        jnp.issubdtype(jnp.result_type(g), jnp.floating)
        and jnp.issubdtype(jnp.result_type(w), jnp.floating)
    ):
      raise TypeError(
          "cdr: ranked leaves must be floating point, got update dtype "
          f"{jnp.result_type(g)} and param dtype {jnp.result_type(w)}; "
          "exclude integer leaves with `mask`."
      )
  if not any(bool(r) for r in flat_mask):
    raise ValueError(
        "cdr: the mask selects no parameter to rank; with nothing ranked the "
        "transform would do nothing. Check `mask`."
    )
  return flat_mask, flat_updates, flat_params


def _scores(g, w):
  # float32 whatever the leaf dtype: bf16 products would tie far more often.
  return jnp.abs(g.astype(jnp.float32) * w.astype(jnp.float32))


def _rank_fn(tau, num_ranked_static: int):
  """k as a function of the number of finite scores."""
  exact = lambda m: _keep_count.keep_count(tau, m)
  if not isinstance(tau, numbers.Real):
    return exact
  # A Python tau is kept at full precision: when every score is finite, k is the
  # reference code's int((1 - tau) * m) in float64 (e.g. tau = 0.2, m = 10 keeps
  # 8, where float32's 0.2000000030 would keep 7).
  k_host = int((1.0 - float(tau)) * num_ranked_static)
  return lambda m: jnp.where(
      m == num_ranked_static, jnp.uint32(k_host), exact(m)
  )


def _passes(g, w, threshold: jax.Array) -> jax.Array:
  """Entries at or above the threshold, non-finite scores included.

  Compared as bit patterns, as in the selection: non-finite scores sort above
  every finite threshold, and no float compare can flush a subnormal. The
  scores are recomputed here rather than kept from the selection: an
  elementwise product is cheaper than storing m floats.
  """
  return _selection.score_bits(_scores(g, w)) >= _selection.score_bits(
      threshold
  )


def _select(flat_mask, flat_updates, flat_params, tau, method):
  # The selection recomputes |g * w| inside each pass: m scores are never
  # stored.
  sources = [
      _selection.Source((g, w), _scores)
      for g, w, r in zip(flat_updates, flat_params, flat_mask) if r
  ]
  num_ranked = sum(s.size for s in sources)
  return _selection.select(
      sources, _rank_fn(tau, num_ranked), method=method
  )


def critical_mask(
    updates: optax.Updates,
    params: optax.Params,
    tau,
    *,
    mask: Optional[MaskOrFn] = None,
    method: str = "auto",
) -> Any:
  """Which entries CDR treats as critical: a pytree of bool arrays.

  Critical entries are the ranked entries whose finite score |g * w| is at
  least the k-th largest finite score, k = floor((1 - tau) * m). Leaves outside
  `mask` and entries with a non-finite score are False (they are not part of
  the split).

  Args:
    updates: gradients, a pytree like `params`.
    params: current parameters.
    tau: fraction of the ranked entries that is non-critical, in [0, 1].
    mask: which leaves are ranked (pytree of bools or a callable on params).
    method: selection algorithm, see `kth_largest`.

  Returns:
    A pytree of bool arrays with the structure and shapes of `params`.
  """
  _check_scalar("tau", tau, 0.0, 1.0)
  flat_mask, flat_updates, flat_params = _ranked_pairs(updates, params, mask)
  sel = _select(flat_mask, flat_updates, flat_params, tau, method)
  flat = []
  for g, w, ranked in zip(flat_updates, flat_params, flat_mask):
    if ranked:
      flat.append(_passes(g, w, sel.value) & jnp.isfinite(_scores(g, w)))
    else:
      flat.append(jnp.zeros(jnp.shape(g), bool))
  return jax.tree.unflatten(jax.tree.structure(params), flat)


def cdr(
    tau: optax.ScalarOrSchedule,
    lam: optax.ScalarOrSchedule,
    *,
    mask: Optional[MaskOrFn] = None,
    regularizer: str = "l1",
    critical_scale: Optional[optax.ScalarOrSchedule] = None,
    method: str = "auto",
) -> optax.GradientTransformationExtraArgs:
  r"""CDR: update only the critical parameters, shrink all ranked ones.

  At every step the ranked parameters are scored by :math:`s = |g \odot w|`
  (computed in float32). With m the number of ranked entries and
  :math:`k = \lfloor (1 - \tau) m \rfloor`, the threshold t is the k-th largest
  score over *all* ranked leaves (one global, exact top-k; not per layer). The
  update of a ranked leaf is

  .. math::
    u = c \, g \, [s \ge t] + \lambda R(w), \quad
    R(w) = \mathrm{sign}(w) \text{ ("l1") or } w \text{ ("l2")},

  with :math:`c` = `critical_scale` (default :math:`1 - \tau`). Ties at t are
  all critical (as in the reference code); k = 0 makes nothing critical,
  tau = 0 makes everything critical. Leaves outside `mask` pass through
  unchanged. Chain an optimizer after it:
  ``optax.chain(cdr(tau, lam), optax.sgd(lr))`` applies
  :math:`w \leftarrow w - lr\,u`, the paper's update.

  The reference code differs from the paper: it ranks only kernels, scales
  critical gradients by (1 - tau), zeroes the others, and its shrinkage is the
  optimizer's L2 weight decay on all parameters, before momentum. That is
  ``optax.chain(cdr(tau, 0.), optax.add_decayed_weights(1e-3),
  optax.sgd(lr, momentum=0.9))``.

  Non-finite scores (a NaN or inf in g or w) are left out of the ranking: m, k
  and t come from the finite scores only, so the split of the finite entries is
  the one they would get without the bad entries. The bad entries pass their
  scaled gradient through, so a NaN reaches the parameters just as with plain
  SGD; wrap the chain in `optax.apply_if_finite` to skip such steps instead.

  `tau`, `lam` and `critical_scale` may be numbers, schedules or traced arrays
  (`optax.inject_hyperparams`). Anything else (a string, None, a bool) raises
  a TypeError naming the argument when the transform is built. Python numbers
  are range-checked when the transform is built, concrete arrays and schedule
  values when it is applied; a traced tau outside [0, 1] or a negative traced
  lam cannot raise inside `jit`, so it turns the update of the ranked leaves
  into NaN instead of failing silently. A Python tau keeps float64 precision
  for k (the reference code's `int((1 - tau) * m)`); an array tau is float32
  and k is exact for that float32 value.

  Args:
    tau: fraction of the ranked entries that is non-critical (the paper uses
      the noise rate), in [0, 1]; number or schedule.
    lam: shrinkage strength, >= 0; number or schedule.
    mask: which leaves are ranked: a pytree of bools like params or a callable
      returning one (as in `optax.masked`). Default: leaves with ndim >= 2;
      see `default_mask` for why biases are not ranked.
    regularizer: "l1" (lam * sign(w), the paper) or "l2" (lam * w).
    critical_scale: factor on critical gradients; None means 1 - tau.
    method: threshold search, see `kth_largest` ("auto", "radix",
      "bisection"); all give the same result.

  Returns:
    An `optax.GradientTransformationExtraArgs` whose state is a `CDRState`.

  Examples:
    >>> import jax.numpy as jnp, optax, optax_cdr
    >>> params = {'w': jnp.array([[1., -2.], [3., 4.]]), 'b': jnp.zeros(2)}
    >>> grads = {'w': jnp.array([[1., 1.], [1., -1.]]), 'b': jnp.ones(2)}
    >>> tx = optax_cdr.cdr(tau=0.5, lam=0.0)
    >>> updates, state = tx.update(grads, tx.init(params), params)
    >>> updates['w'].tolist(), updates['b'].tolist(), int(state.num_critical)
    ([[0.0, 0.0], [0.5, -0.5]], [1.0, 1.0], 2)

  References:
    Xia, Liu, Han, Gong, Wang, Ge, Chang. Robust early-learning: Hindering the
    memorization of noisy labels. ICLR 2021.
  """
  _check_scalar("tau", tau, 0.0, 1.0)
  _check_scalar("lam", lam, 0.0, float("inf"))
  if critical_scale is not None:
    _check_scalar("critical_scale", critical_scale, float("-inf"), float("inf"))
  if regularizer not in _REGULARIZERS:
    raise ValueError(
        f"Unknown regularizer {regularizer!r}; expected one of {_REGULARIZERS}."
    )
  if method not in _selection.METHOD_NAMES:
    raise ValueError(
        f"Unknown method {method!r}; expected one of {_selection.METHOD_NAMES}."
    )

  def init_fn(params):
    mask_tree = _mask_tree(mask, params)
    flat_mask = jax.tree.structure(params).flatten_up_to(mask_tree)
    num_ranked = sum(
        int(jnp.size(p)) for p, r in zip(jax.tree.leaves(params), flat_mask) if r
    )
    return CDRState(
        count=jnp.zeros([], jnp.int32),
        threshold=jnp.zeros([], jnp.float32),
        num_critical=jnp.asarray(num_ranked, jnp.uint32),
        num_ranked=jnp.asarray(num_ranked, jnp.uint32),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    flat_mask, flat_updates, flat_params = _ranked_pairs(updates, params, mask)
    value = lambda v: v(state.count) if callable(v) else v
    tau_t, lam_t = value(tau), value(lam)
    _check_scalar("tau", tau_t, 0.0, 1.0)
    _check_scalar("lam", lam_t, 0.0, float("inf"))
    if critical_scale is None:
      scale = 1.0 - tau_t
    else:
      scale = value(critical_scale)
      _check_scalar("critical_scale", scale, float("-inf"), float("inf"))
    # Concrete values were checked above; traced ones are guarded in the output.
    traced = not (_is_concrete(tau_t) and _is_concrete(lam_t))
    valid = (jnp.asarray(tau_t) >= 0) & (jnp.asarray(tau_t) <= 1) & (
        jnp.asarray(lam_t) >= 0
    )

    sel = _select(flat_mask, flat_updates, flat_params, tau_t, method)
    flat_out = []
    for g, w, ranked in zip(flat_updates, flat_params, flat_mask):
      if not ranked:
        flat_out.append(g)
        continue
      passes = _passes(g, w, sel.value)
      w32 = w.astype(jnp.float32)
      shrink = jnp.sign(w32) if regularizer == "l1" else w32
      u = jnp.where(passes, scale * g.astype(jnp.float32), 0.0) + lam_t * shrink
      if traced:
        u = jnp.where(valid, u, jnp.nan)
      flat_out.append(u.astype(g.dtype))

    new_state = CDRState(
        count=optax.safe_increment(state.count),
        threshold=sel.value,
        num_critical=sel.num_at_least,
        num_ranked=sel.num_finite,
    )
    return jax.tree.unflatten(jax.tree.structure(updates), flat_out), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
