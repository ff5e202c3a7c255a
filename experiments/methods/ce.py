"""CE: softmax cross-entropy with the protocol's SGD (the paper's baseline row)."""

import ml_collections

from experiments import schema
from experiments.methods import supervised
from experiments.methods.base import Context
from experiments.methods.base import Method

DESCRIPTION = "cross-entropy, SGD + momentum + weight decay"


ARGS = {}


def default_args() -> ml_collections.ConfigDict:
  return schema.defaults(ARGS)


def make(ctx: Context) -> Method:
  return supervised.supervised(ctx, supervised.sgd_weight_decay(ctx))
