"""Co-teaching (Han et al., NeurIPS 2018): two networks teach each other.

Both networks see the same batch; each keeps its int(R(t) B) smallest-loss
examples, and its *peer* is updated on them (bhanML/Co-teaching loss.py
L8-29: network 1 learns from network 2's selection and vice versa). Both
forward passes and both updates are one compiled step. Network 1 is
evaluated: the official code reports both networks, network 1's accuracy
first (main.py L215-241, L299).

``selected`` (and label precision) is network 1's training set, i.e.
network 2's small-loss selection; ``noisy_ids`` are the examples that
network 2 rejected at their most recent appearance. Schedule, defaults,
optimizer and the deviations from the official code: ``small_loss``.

References:
  Han, Yao, Yu, Niu, Xu, Hu, Tsang, Sugiyama. "Co-teaching: Robust Training
  of Deep Neural Networks with Extremely Noisy Labels". NeurIPS 2018.
"""

import jax.numpy as jnp
import ml_collections

from experiments.methods import selection
from experiments.methods import small_loss
from experiments.methods.base import Context
from experiments.methods.base import Method

DESCRIPTION = "Co-teaching: two nets, each learns its peer's R(t) smallest losses"

check_args = small_loss.check_args
check_config = small_loss.check_config


ARGS = small_loss.ARGS


def default_args() -> ml_collections.ConfigDict:
  """Co-teaching's schedule and optimizer options (see small_loss)."""
  return small_loss.default_args()


def exchange(
    fwds, keep, candidates=None
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(weights of network 1, weights of network 2): each the peer's selection."""
  masks = [selection.small_loss_mask(f.loss, keep, candidates) for f in fwds]
  return masks[1].astype(jnp.float32), masks[0].astype(jnp.float32)


def select_peer_small_loss(fwds, batch, info, table) -> small_loss.Selection:
  keep = selection.keep_count(table, info.epoch, batch.labels.shape[0])
  return small_loss.Selection(
      exchange(fwds, keep),
      judged=jnp.ones(batch.labels.shape, bool),
      metrics={},
  )


def make(ctx: Context) -> Method:
  return small_loss.make(ctx, 2, select_peer_small_loss)
