"""CDR when the noise rate is unknown: estimate tau after a warm-up.

The paper sets CDR's tau to the true noise rate (an oracle). Without it, we
train the method with tau = 0 (every ranked entry critical: the method's own
optimizer on the full gradient) for a warm-up, estimate the noise rate from
that model's predictions on the noisy training set, and continue with
tau = the estimate. tau lives in the optimizer state
(`optax.inject_hyperparams`), so it is checkpointed and a resumed run is
bit-identical.

Estimators (experiments/methods/estimation.py): ``"anchor"``, 1 - sum_i
prior_i T_ii of the anchor-point T (Patrini et al. 2017; the 97th-percentile
filter of the T-Revision code); ``"cleanlab"``, the off-diagonal mass of
confident learning's joint (Northcutt et al. 2021). Both use the in-sample
predictions of the warm-up model on the training split: a short warm-up has
not memorized the noisy labels yet.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from experiments.methods import estimation
from experiments.methods import supervised
from experiments.methods.base import Context
from experiments.methods.base import EpochView
from experiments.methods.base import Method
from experiments.methods.base import Phase

def make(
    ctx: Context,
    build_tx: Callable[[jax.Array], optax.GradientTransformation],
    optimizer_metrics,
) -> Method:
  """A CDR method whose tau is estimated after a warm-up.

  Args:
    ctx: the run's context; ``ctx.args.tau_source`` names the estimator.
    build_tx: the method's optimizer as a function of tau.
    optimizer_metrics: the method's diagnostics of the optimizer state.
  """
  num_warmup = estimation.warmup_epochs(ctx.args, ctx.config.num_epochs)
  tx = optax.inject_hyperparams(build_tx, static_args=())(tau=0.0)

  def metrics(opt_state):
    return {
        **optimizer_metrics(opt_state),
        "tau": optax.tree_utils.tree_get(opt_state, "tau"),
    }

  method = supervised.supervised(ctx, tx, optimizer_metrics=metrics)

  def end_epoch(state, epoch: int, view: EpochView):
    if epoch != num_warmup:
      return state
    tau = estimation.estimate_rate(
        view.predict_train(state), view.train_labels, ctx.args.tau_source
    )
    opt_state = optax.tree_utils.tree_set(
        state.opt_state, tau=jnp.asarray(tau, jnp.float32)
    )
    return state._replace(opt_state=opt_state)

  def report(state):
    return {
        "tau_source": ctx.args.tau_source,
        "estimated_tau": float(optax.tree_utils.tree_get(state.opt_state, "tau")),
        "true_noise_rate": ctx.noise_rate,
    }

  return Method(
      init=method.init,
      train_step=method.train_step,
      predict=method.predict,
      phases=(Phase("warmup", num_warmup, method.train_step),),
      end_epoch=end_epoch,
      report=report,
  )
