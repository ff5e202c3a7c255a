"""CDR (Xia et al., ICLR 2021): two variants over `optax_cdr.cdr`.

Both rank the kernels (ndim >= 2) of the network by |g * w| every step and
keep the gradient of the top (1 - tau) fraction, scaled by (1 - tau).

* ``cdr_ref``: the reference code (xiaoboxia/CDR). Non-critical gradients are
  zeroed, and the only shrinkage is torch's L2 weight decay on every
  parameter, added before momentum 0.9 - so non-critical weights still move
  along their momentum buffer.
* ``cdr_paper``: the paper's equations, with plain SGD:
  W_c <- W_c - lr ((1 - tau) dL/dW_c + lam sgn(W_c)),
  W_n <- W_n - lr lam sgn(W_n).
  The equations are applied to the kernels; biases and normalization
  parameters get plain SGD on their full gradient. Ranking them would freeze
  every zero-initialized one (BatchNorm's bias): its score |g * 0| = 0 is never
  critical and sgn(0) = 0 never shrinks it. The reference code ranks the
  same leaves.

tau defaults to the true noise rate, the paper's oracle (Table 2 of the paper
studies how the best split constant relates to it); ``tau_source`` "anchor"
or "cleanlab" estimates it after a warm-up instead (cdr_unknown_rate.py).

References:
  Xia, Liu, Han, Gong, Wang, Ge, Chang. "Robust early-learning: Hindering the
  memorization of noisy labels". ICLR 2021.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

import optax_cdr

from experiments import schema
from experiments.methods import cdr_unknown_rate
from experiments.methods import estimation
from experiments.methods import supervised
from experiments.methods.base import Context
from experiments.methods.base import Method

DESCRIPTION_REF = "CDR as the reference code: critical grads x(1-tau), L2 decay"
DESCRIPTION_PAPER = "CDR as the paper: critical grads x(1-tau), lam*sign(w), SGD"


# tau: the non-critical fraction; None = the true noise rate. tau_source
# "anchor" or "cleanlab" estimates tau after warmup_epochs instead
# (cdr_unknown_rate.py); "oracle" uses tau or the true rate.
ARGS_REF = {
    "tau": schema.Real(None, 0.0, 1.0, optional=True),
    "tau_source": schema.Str("oracle", estimation.SOURCES),
    # None: 10% of the epochs, as the T-Revision code's 20 of 200.
    "warmup_epochs": schema.Int(None, 1, optional=True),
}
ARGS_PAPER = {
    **ARGS_REF,
    # The paper's lambda (shrinkage lam * sign(w)); 1e-3 is the reference
    # code's weight decay, the shrinkage strength its runs used.
    "lam": schema.Real(1e-3, 0.0),
}


def default_args_ref() -> ml_collections.ConfigDict:
  return schema.defaults(ARGS_REF)


def default_args_paper() -> ml_collections.ConfigDict:
  return schema.defaults(ARGS_PAPER)


def check_config(
    args: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> None:
  """The checks that need the protocol, before any data loads."""
  estimation.check_source(args, config.num_epochs, args.tau_source)


def tau(ctx: Context) -> float:
  """The configured tau, or the true noise rate (the paper's oracle)."""
  return ctx.noise_rate if ctx.args.tau is None else ctx.args.tau


def critical_fraction(opt_state: optax.OptState) -> dict[str, jax.Array]:
  """Fraction of the ranked parameters that were critical in the last step."""
  num_critical = optax.tree_utils.tree_get(opt_state, "num_critical")
  num_ranked = optax.tree_utils.tree_get(opt_state, "num_ranked")
  return {
      "critical_fraction": num_critical.astype(jnp.float32)
      / jnp.maximum(num_ranked, 1).astype(jnp.float32)
  }


def optimizer_ref(ctx: Context, tau_=None) -> optax.GradientTransformation:
  """Critical grads x (1 - tau), the rest 0; then torch's SGD(momentum, wd)."""
  return optax.chain(
      optax_cdr.cdr(tau(ctx) if tau_ is None else tau_, 0.0),
      supervised.sgd_weight_decay(ctx),
  )


def optimizer_paper(ctx: Context, tau_=None) -> optax.GradientTransformation:
  """The paper's update rule with plain SGD (no momentum, no weight decay)."""
  return optax.chain(
      optax_cdr.cdr(tau(ctx) if tau_ is None else tau_, ctx.args.lam, regularizer="l1"),
      optax.sgd(ctx.learning_rate),
  )


def _make(ctx: Context, optimizer) -> Method:
  if ctx.args.tau_source == "oracle":
    return supervised.supervised(
        ctx, optimizer(ctx), optimizer_metrics=critical_fraction
    )
  return cdr_unknown_rate.make(
      ctx,
      lambda tau: optimizer(ctx, tau),
      critical_fraction,
  )


def make_ref(ctx: Context) -> Method:
  return _make(ctx, optimizer_ref)


def make_paper(ctx: Context) -> Method:
  return _make(ctx, optimizer_paper)
