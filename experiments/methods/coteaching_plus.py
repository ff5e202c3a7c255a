"""Co-teaching+ (Yu et al., ICML 2019): Co-teaching on the disagreements.

For the first ``init_epoch`` epochs this is plain Co-teaching (phase
"coteaching"). Afterwards, in every batch, the candidates are the D examples
on which the two networks' predicted classes differ; each network keeps
int(R(t) D) of them with the smallest loss and its peer learns from those
(xingruiyu/coteaching_plus loss.py L37-82, main.py L251-255).

Edge cases, as the official code:

* fewer candidates than the keep fraction allows, int(R(t) D) = 0 with
  D > 0: all D disagreements are kept (loss.py L24-27);
* no disagreement, D = 0: both networks learn the whole batch's mean CE
  while (epoch + 1) * i < ``empty_warm_steps`` (5000), with i the iteration
  within the epoch and epoch + 1 the official 1-based epoch (loss.py L60,
  L69-78; its ``step`` is ``epoch * i``, main.py L255), and nothing after
  that: the loss is 0, yet the optimizer still steps.

``init_epoch``: None picks the official value of the dataset (main.py L52,
L73, L94: MNIST 0, CIFAR-10 20, CIFAR-100 5; the CIFAR-N label sets take
their images' values). Fashion-MNIST is not in the official code: we use 0,
MNIST's value, because the protocol runs F-MNIST exactly as MNIST (same
format and class count, batch 32, 100 epochs, lr drops at epochs 10 and
20), and any init_epoch >= 10 would start the disagreement phase only after
the first drop. Other datasets need an explicit init_epoch. Our epochs count
from 0, the official loop from 1 (main.py L366), so the official
``init_epoch = 20`` trains 19 epochs of Co-teaching and ours 20.

Deviations (arguments give the official behaviour where it matters): the
official disagreement loss is the cross-entropy of the *softmax outputs*
(a softmax applied twice, loss.py L38-39, L65-75), also for ranking;
``loss_on_probabilities=True`` reproduces it, the default uses the logits
as Co-teaching and the paper do. The official code also drops dataset index
0 from the disagreement bookkeeping (loss.py L53-58), which we do not. The
schedule, optimizer and normalization are ``small_loss``'s.

``selected`` is network 1's training set (network 2's selection among the
disagreements, the whole batch or nothing in the empty case); ``noisy_ids``
are the examples that were, at their most recent judgement (as a candidate
of network 2's selection), rejected. Examples on which the networks agree
are not judged.

References:
  Yu, Han, Yao, Niu, Tsang, Sugiyama. "How does Disagreement Help
  Generalization against Label Corruption?". ICML 2019.
"""

import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict

from experiments import errors
from experiments import schema
from experiments.data import specs
from experiments.methods import coteaching
from experiments.methods import selection
from experiments.methods import small_loss
from experiments.methods.base import Context
from experiments.methods.base import Method

DESCRIPTION = "Co-teaching+: Co-teaching on the two nets' disagreements"

# xingruiyu/coteaching_plus main.py L52, L73, L94; fashion_mnist: see above.
INIT_EPOCH = {
    "mnist": 0,
    "fashion_mnist": 0,
    "cifar10": 20,
    "cifar10_n": 20,
    "cifar100": 5,
    "cifar100_n": 5,
}


ARGS = {
    **small_loss.ARGS,
    # Epochs of plain Co-teaching first; None = INIT_EPOCH[dataset].
    "init_epoch": schema.Int(None, 0, optional=True),
    # The official double softmax in the disagreement loss (loss.py L38-39, L68).
    "loss_on_probabilities": schema.Bool(False),
    # Empty disagreement: whole batch while (epoch + 1) * i is below this
    # (loss.py L60).
    "empty_warm_steps": schema.Int(5000, 0),
}


def default_args() -> ml_collections.ConfigDict:
  """Co-teaching's arguments plus the disagreement phase's."""
  return schema.defaults(ARGS)


check_args = small_loss.check_args


def check_config(
    args: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> None:
  """The checks that need the protocol, before any data loads."""
  small_loss.check_config(args, config)
  init_epoch(args, config.dataset)


def init_epoch(args: ml_collections.ConfigDict, dataset: str) -> int:
  """args.init_epoch, or the official value of the dataset."""
  if args.init_epoch is not None:
    return args.init_epoch
  dataset = specs.canonical_name(dataset)
  if dataset not in INIT_EPOCH:
    raise errors.UserError(
        f"coteaching_plus has no init_epoch for {dataset!r}; set "
        "--config.method_args.coteaching_plus.init_epoch."
    )
  return INIT_EPOCH[dataset]


def disagreement(fwds) -> jnp.ndarray:
  """Bool (B,): the two networks predict different classes."""
  return jnp.argmax(fwds[0].logits, -1) != jnp.argmax(fwds[1].logits, -1)


def select_in_disagreement(ctx: Context):
  """The selection rule after init_epoch (see the module docstring)."""
  def select(fwds, batch, info, table) -> small_loss.Selection:
    candidates = disagreement(fwds)
    num = jnp.sum(candidates)
    keep = selection.keep_count(table, info.epoch, num)
    official_step = (info.epoch + 1) * (info.step % ctx.steps_per_epoch)
    everything = jnp.full(
        candidates.shape, official_step < ctx.args.empty_warm_steps, jnp.float32
    )
    weights = tuple(
        jnp.where(num == 0, everything, w)
        for w in coteaching.exchange(fwds, keep, candidates)
    )
    return small_loss.Selection(
        weights,
        judged=candidates,
        metrics={"disagreement_fraction": jnp.mean(candidates)},
    )

  return select


def make(ctx: Context) -> Method:
  epochs = init_epoch(ctx.args, ctx.config.dataset)
  phases = ()
  if epochs:
    phases = (small_loss.SelectionPhase(
        "coteaching", epochs, coteaching.select_peer_small_loss
    ),)
  return small_loss.make(
      ctx,
      2,
      select_in_disagreement(ctx),
      phases,
      on_probabilities=ctx.args.loss_on_probabilities,
  )
