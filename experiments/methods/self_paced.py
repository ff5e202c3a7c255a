"""Self-paced selection: one network learns its R(t) smallest-loss examples.

One network learns, in every batch, from its own R(t) smallest-loss examples
(``small_loss``: R(t) = 1 - tau min(t / T_k, 1), T_k = 10), tau being the
fraction of corrupted labels. This is the "MentorNet" baseline of the
Co-teaching and Dual-T comparisons (self-paced learning with Co-teaching's
schedule and the oracle rate), not MentorNet itself: the real method
(``mentornet``, MentorNet-PD) weights examples by a loss threshold that is
a moving percentile and never sees the noise rate.

The threshold is the R(t)-quantile of the batch, which makes the fraction
kept exactly R(t). ``noisy_ids`` are the examples the network rejected at
their most recent appearance. Defaults, optimizer and the report are those
of ``small_loss``.

References:
  Kumar, Packer, Koller. "Self-Paced Learning for Latent Variable Models".
  NeurIPS 2010.
  Han, Yao, Yu, Niu, Xu, Hu, Tsang, Sugiyama. "Co-teaching: Robust Training
  of Deep Neural Networks with Extremely Noisy Labels". NeurIPS 2018.
"""
import jax.numpy as jnp
import ml_collections

from experiments.methods import selection
from experiments.methods import small_loss
from experiments.methods.base import Context
from experiments.methods.base import Method

DESCRIPTION = "Self-paced: one net learns its R(t) smallest losses (oracle rate)"

check_args = small_loss.check_args
check_config = small_loss.check_config


ARGS = small_loss.ARGS


def default_args() -> ml_collections.ConfigDict:
  """Co-teaching's schedule and optimizer options (see small_loss)."""
  return small_loss.default_args()


def select_own_small_loss(fwds, batch, info, table) -> small_loss.Selection:
  """The network keeps its own int(R(t) B) smallest-loss examples."""
  (fwd,) = fwds
  keep = selection.keep_count(table, info.epoch, batch.labels.shape[0])
  mask = selection.small_loss_mask(fwd.loss, keep)
  return small_loss.Selection(
      (mask.astype(fwd.loss.dtype),), judged=jnp.ones_like(mask), metrics={}
  )


def make(ctx: Context) -> Method:
  return small_loss.make(ctx, 1, select_own_small_loss)
