"""MentorNet (Jiang et al., ICML 2018), self-paced, with Co-teaching's R(t).

One network learns, in every batch, from its own R(t) smallest-loss examples
(``small_loss``: R(t) = 1 - tau min(t / T_k, 1), T_k = 10). The CDR paper
does not give its MentorNet settings; following the issue ("baselines II"),
we use the schedule of the Co-teaching / Dual-T comparisons, which list
MentorNet beside Co-teaching. Neither bhanML/Co-teaching nor
xingruiyu/coteaching_plus ships MentorNet code, so this single-network
selection is our reading of that baseline, not a port.

What google/mentornet's ``mentornet_pd`` is, and what we do not implement:
the PD ("pre-defined") MentorNet is a small bidirectional-LSTM + FC network
(code/utils.py L89-160) trained offline to reproduce a fixed weighting
v*(loss, loss - lambda, epoch) (code/training_mentornet/models.py L166-195,
``vstar_mentornet_pd``): every example while training progress is at most
18%, then self-paced weights v = [loss <= lambda] until 90%, then SPCL-linear
weights v = clip(1 - (loss - lambda) / gamma, 0, 1) with gamma = 1. Its
threshold lambda is a moving average (decay 0.5, cifar_train_mentornet.py
L91) of the batch's p-th loss percentile (0.7 by default, L80; the
commands pass 0.75 as ``--loss_p_precentile``, a misspelling of the flag,
commands/train_studentnet_resnet.sh L307), and the weights are further
dropped at random with rates 0.5 then 0.05 ("example dropout", L94; the
commands pass "0.5,17,0.05,83"). The progress is measured in hundredths of
the training steps (L197-198), not in epochs.

We keep its self-paced core - train on the examples whose loss is below a
per-batch threshold - with the threshold chosen as the R(t)-quantile of the
batch, which makes the fraction kept exactly R(t): no learned mentor, no
moving average, no example dropout, no SPCL phase. ``noisy_ids`` are the
examples the network rejected at their most recent appearance.

Defaults, optimizer and the report are those of ``small_loss``.

References:
  Jiang, Zhou, Leung, Li, Fei-Fei. "MentorNet: Learning Data-Driven
  Curriculum for Very Deep Neural Networks on Corrupted Labels". ICML 2018.
  Han, Yao, Yu, Niu, Xu, Hu, Tsang, Sugiyama. "Co-teaching: Robust Training
  of Deep Neural Networks with Extremely Noisy Labels". NeurIPS 2018.
"""

import jax.numpy as jnp
import ml_collections

from experiments.methods import selection
from experiments.methods import small_loss
from experiments.methods.base import Context
from experiments.methods.base import Method

DESCRIPTION = "MentorNet (self-paced): one net learns its R(t) smallest losses"

check_args = small_loss.check_args
check_config = small_loss.check_config


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
