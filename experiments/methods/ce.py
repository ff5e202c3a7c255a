"""CE: softmax cross-entropy with the protocol's SGD (the paper's baseline row)."""

import ml_collections

from experiments.methods import supervised
from experiments.methods.base import Context
from experiments.methods.base import Method

DESCRIPTION = "cross-entropy, SGD + momentum + weight decay"


def default_args() -> ml_collections.ConfigDict:
  """CE has no hyperparameters of its own: the optimizer is the protocol's."""
  return ml_collections.ConfigDict()


def make(ctx: Context) -> Method:
  return supervised.supervised(ctx, supervised.sgd_weight_decay(ctx))
