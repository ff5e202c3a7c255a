"""S2E (Yao et al., ICML 2020): Co-teaching with a searched schedule R(t).

S2E keeps Co-teaching's step (two networks; each is updated on its peer's
int(R(t) B) smallest-loss examples) and replaces the hand-made R(t) by a
curve from a 12-parameter family, searched by an outer loop of whole
trainings. Within this interface a method is one training run, so S2E is
split in two:

* this method: Co-teaching driven by the schedule of ``args.params`` (the
  search's result), or, when None, by the family's member closest to
  Co-teaching's curve (see `coteaching_like_params`);
* the search, ``python -m experiments.s2e_search``: the natural-gradient
  loop over the parameters' distribution, which runs this method once per
  sample through ``experiments.train.train_and_evaluate`` and writes the best
  parameters (see that module).

The family (AutoML-4Paradigm/S2E heng_main.py L238-242, the forget rate of
the e-th epoch, R = 1 - forget rate, loss.py L136): with theta_0..theta_11,
    f(t) = th0 (1 - exp(-th2 t^th1))
         + (1 - th0) th7 (1 - (th4 t + 1)^-th3)
         + (1 - th0) (1 - th7) (1 - log(1 + th8) / log(1 + th8 + th9 t))
         - th6 (t / T)^th5
         - th10 log(1 + t^th11) / log(1 + T^th11),
a convex mix of three rising, saturating curves (exponential, rational,
logarithmic) minus two terms that let the forget rate fall again late in
training. The official code trains its epochs t = 1..T-1 with T = n_epoch
(L257); here the run's 0-based epoch i uses t = i + 1 and T = num_epochs + 1.
The forget rate is capped at 0.99 (L174) and, as the official slicing does
(a keep count above the batch keeps the batch), floored at 0. Each parameter
lies in [0, PARAM_UPPER[k]]: the search samples them from Beta distributions
on (0, 1) and scales some by 0.5 or 2 (L302-308).

The Co-teaching step, the selection record, the optimizer options and their
deviations from the official code are those of ``small_loss`` and
``coteaching`` (reused, not re-implemented): the protocol's SGD by default,
``optimizer="adam"`` for the official Adam 1e-3 with its linear decay from
epoch 80 (heng_main.py L21, L51, L84-85, L230). ``small_loss`` also drops
Adam's beta1 to 0.1 from that epoch, which S2E's code meant to do but did
not (it sets ``param_group['momentum']``, which torch's Adam ignores, L91).
Where int(R(t) B) = 0 the whole batch is kept (small_loss's convention; the
official code would average an empty selection). The official code averages
the selected losses and divides once more by their number (loss.py L145-148);
we take the plain mean (see small_loss). Network 1 is evaluated; the official
code reports the mean of both networks' test accuracies (L274).

References:
  Yao, Yang, Han, Niu, Kwok. "Searching to Exploit Memorization Effect in
  Learning with Noisy Labels". ICML 2020.
"""

import dataclasses

import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict
import numpy as np

from experiments import errors
from experiments import schema
from experiments.methods import coteaching
from experiments.methods import selection
from experiments.methods import small_loss
from experiments.methods.base import Context
from experiments.methods.base import Method

DESCRIPTION = "S2E: Co-teaching with R(t) from a searched mix of basis curves"

NUM_PARAMS = 12
# Range of each parameter: a Beta sample on (0, 1) times this factor
# (heng_main.py L302-308: th2, th4, th6, th9, th10 x0.5; th5, th11 x2).
PARAM_UPPER = np.array(
    [1.0, 1.0, 0.5, 1.0, 0.5, 2.0, 0.5, 1.0, 1.0, 0.5, 0.5, 2.0]
)
# The forget rate's cap (heng_main.py L174).
MAX_FORGET_RATE = 0.99


ARGS = {
    # The 12 schedule parameters (a tuple), e.g. from s2e_search's
    # best_params.json; None: `coteaching_like_params`.
    "params": schema.Reals(None, 0.0, length=NUM_PARAMS, optional=True),
    # Level of the default curve; None = the true fraction of corrupted
    # labels (small_loss.forget_rate, Co-teaching's default). Unused when
    # params is set.
    "forget_rate": small_loss.ARGS["forget_rate"],
    # "sgd": the protocol's SGD; "adam": the official Adam (heng_main.py L230).
    "optimizer": small_loss.ARGS["optimizer"],
    # heng_main.py L21 (lr 0.001) and L51 (decay from epoch 80).
    "adam_learning_rate": small_loss.ARGS["adam_learning_rate"],
    "adam_decay_start": small_loss.ARGS["adam_decay_start"],
}


def default_args() -> ml_collections.ConfigDict:
  """The schedule's parameters and Co-teaching's optimizer options."""
  return schema.defaults(ARGS)


def check_args(args: ml_collections.ConfigDict) -> None:
  """Raises ValueError for parameters outside the search space."""
  if args.params is not None:
    params = np.asarray(args.params, np.float64)
    if params.shape != (NUM_PARAMS,):
      raise errors.UserError(
          f"method_args params must have {NUM_PARAMS} numbers, got "
          f"{args.params!r}."
      )
    outside = np.flatnonzero((params < 0) | (params > PARAM_UPPER))
    if outside.size:
      raise errors.UserError(
          f"method_args params[{outside[0]}] = {params[outside[0]]} is outside "
          f"[0, {PARAM_UPPER[outside[0]]}]."
      )
    if params[8] <= 0:
      raise errors.UserError("method_args params[8] must be > 0 (log(1 + th8) / ...).")


def forget_rates(params, t, horizon: float) -> np.ndarray:
  """The family's f(t) (uncapped), float64; `horizon` is T."""
  th = np.asarray(params, np.float64)
  t = np.asarray(t, np.float64)
  rising = (
      th[0] * (1 - np.exp(-th[2] * t ** th[1]))
      + (1 - th[0]) * th[7] * (1 - (th[4] * t + 1) ** -th[3])
      + (1 - th[0]) * (1 - th[7])
      * (1 - np.log1p(th[8]) / np.log(1 + th[8] + th[9] * t))
  )
  falling = th[6] * (t / horizon) ** th[5] + th[10] * np.log1p(
      t ** th[11]
  ) / np.log1p(horizon ** th[11])
  return rising - falling


def remember_rates(params, num_epochs: int) -> np.ndarray:
  """R of the run's 0-based epochs 0..num_epochs-1, in [0.01, 1], float64."""
  t = np.arange(1, num_epochs + 1)
  forget = forget_rates(params, t, num_epochs + 1)
  return 1.0 - np.clip(forget, 0.0, MAX_FORGET_RATE)


def coteaching_like_params(forget_rate: float) -> tuple[float, ...]:
  """f(t) = tau (1 - exp(-0.2 t)): Co-teaching's ramp to tau (0.86 tau at
  t = 10, its T_k), from the exponential curve alone (th7 = 1 and th3 = 0
  zero the other two; th6 = th10 = 0 remove the falling terms)."""
  return (forget_rate, 1.0, 0.2, 0.0, 0.25, 1.0, 0.0, 1.0, 0.5, 0.25, 0.0, 1.0)


def schedule_params(ctx: Context) -> tuple[float, ...]:
  """args.params, or the Co-teaching-like curve at the forget rate."""
  if ctx.args.params is not None:
    return tuple(float(p) for p in ctx.args.params)
  tau = small_loss.forget_rate(ctx)
  return coteaching_like_params(tau)


def make(ctx: Context) -> Method:
  params = schedule_params(ctx)
  rates = remember_rates(params, ctx.config.num_epochs)

  def select(fwds, batch, info, table):
    del table  # Co-teaching's R(t): S2E's replaces it.
    batch_size = batch.labels.shape[0]
    keep = selection.keep_count(
        selection.keep_counts(rates, batch_size), info.epoch, batch_size
    )
    epoch = jnp.minimum(info.epoch, len(rates) - 1)
    return small_loss.Selection(
        coteaching.exchange(fwds, keep),
        judged=jnp.ones(batch.labels.shape, bool),
        metrics={"remember_rate": jnp.asarray(rates, jnp.float32)[epoch]},
    )

  # small_loss.make reads its own args (the optimizer's); its Co-teaching
  # schedule fields keep their defaults and are unused by `select`.
  shared = small_loss.default_args()
  for name in ("optimizer", "adam_learning_rate", "adam_decay_start"):
    shared[name] = ctx.args[name]
  method = small_loss.make(ctx._replace(args=shared), 2, select)

  def report(state) -> dict:
    return {
        **selection.report(state),
        "schedule_params": list(params),
        "remember_rates": [float(r) for r in rates],
    }

  return dataclasses.replace(method, report=report)
