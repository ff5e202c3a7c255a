"""Estimating the transition matrix T and the noise rate from a trained model.

Pure NumPy functions, shared by Forward, T-Revision and CDR with an unknown
tau. ``T[i, j] = p(noisy = j | clean = i)`` is row-stochastic, as in
``experiments.data.noise``.

* Anchor points (Patrini et al. 2017; `NoiseEstimator.fit` in
  giorgiop/loss-correction models.py l.427-452 and `fit` in
  xiaoboxia/T-Revision tools.py l.27-42): an example that surely belongs to
  class i has p(clean = i | x) = 1, so the model's noisy posterior there is
  row i of T. Per class, the anchor is the example with the highest p(i),
  or with the 97th-percentile filter the highest below the 97th percentile
  (both repos: outliers at the very top are often confident mistakes).
  The official functions zero the filtered values *in place* in the shared
  probability matrix, so later rows read zeros in the columns already
  filtered; we filter a copy (the evident intent) and row-normalize, as
  loss-correction's `predict` does (T-Revision's `norm`, tools.py l.4-7,
  divides column j by row sum j, which is a no-op on softmax rows).
* The noise rate tau = p(noisy != clean) = 1 - sum_i prior_i T_ii, with the
  prior of the noisy labels standing in for the unknown clean prior (they
  coincide for symmetric noise on balanced classes).
* Confident learning (Northcutt, Jiang, Chuang 2021) through `cleanlab`
  (`cleanlab.count.estimate_joint`): the calibrated joint p(noisy, clean) of
  the confidently counted examples; its off-diagonal mass is a second
  estimate of tau. It wants out-of-sample probabilities; the methods pass
  the in-sample ones of the training split at the end of a short CE warm-up
  (see the methods' docstrings for why).

References:
  Patrini, Rozza, Menon, Nock, Qu. "Making deep neural networks robust to
  label noise: a loss correction approach". CVPR 2017.
  Xia, Liu, Wang, Han, Gong, Niu, Sugiyama. "Are anchor points really
  indispensable in label-noise learning?". NeurIPS 2019.
  Northcutt, Jiang, Chuang. "Confident learning: Estimating uncertainty in
  dataset labels". JAIR 2021.
"""

from typing import Any, NamedTuple

import ml_collections
import numpy as np

from experiments import errors


class Estimate(NamedTuple):
  """What is estimated from one model (float32, fixed shapes for checkpoints).

  Attributes:
    transition: ``(C, C)`` anchor-point estimate of T.
    noise_rate: scalar, 1 - sum_i prior_i T_ii of ``transition``.
    cl_transition: ``(C, C)`` T from cleanlab's joint.
    cl_noise_rate: scalar, cleanlab's off-diagonal joint mass.
  """

  transition: Any
  noise_rate: Any
  cl_transition: Any
  cl_noise_rate: Any


def placeholder(num_classes: int) -> Estimate:
  """The estimate before there is one: T = I, tau = 0."""
  eye = np.eye(num_classes, dtype=np.float32)
  zero = np.zeros([], np.float32)
  return Estimate(eye, zero, eye.copy(), zero.copy())


def softmax(logits: np.ndarray) -> np.ndarray:
  """Row-wise softmax in float64."""
  logits = np.asarray(logits, np.float64)
  exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return exp / exp.sum(axis=-1, keepdims=True)


def anchor_transition(
    probs: np.ndarray, *, filter_outlier: bool = True, percentile: float = 97.0
) -> np.ndarray:
  """T from anchor points: row i = the predicted distribution of class i's anchor.

  Args:
    probs: ``(n, C)`` predicted noisy-label posteriors p(noisy | x).
    filter_outlier: take, per class, the highest p(i) strictly below its
      `percentile`-th percentile (numpy's "higher" method), not the highest.
    percentile: the filter's percentile.

  Returns:
    ``(C, C)`` row-normalized float64 T.
  """
  probs = np.asarray(probs, np.float64)
  anchors = []
  for column in probs.T:
    if filter_outlier:
      threshold = np.percentile(column, percentile, method="higher")
      column = np.where(column >= threshold, -np.inf, column)
    anchors.append(np.argmax(column))
  transition = probs[anchors]
  return transition / transition.sum(axis=1, keepdims=True)


def class_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Class frequencies of `labels`, shape ``(C,)``."""
  return np.bincount(labels, minlength=num_classes) / len(labels)


def noise_rate(transition: np.ndarray, prior: np.ndarray) -> float:
  """tau = p(noisy != clean) = 1 - sum_i prior_i T_ii."""
  return float(1.0 - np.sum(prior * np.diag(transition)))


def confident_learning(
    labels: np.ndarray, probs: np.ndarray
) -> tuple[np.ndarray, float]:
  """T and tau from cleanlab's confident joint.

  Args:
    labels: ``(n,)`` noisy labels.
    probs: ``(n, C)`` predicted posteriors (ideally out-of-sample).

  Returns:
    ``(T, tau)``: row-stochastic ``(C, C)`` T (a clean class never counted
    gets the identity row) and the joint's off-diagonal mass.
  """
  # Imported here: cleanlab pulls in scikit-learn and pandas (about 2 s),
  # which every other run and test would otherwise pay at import.
  from cleanlab import count  # pylint: disable=g-import-not-at-top

  probs = np.asarray(probs, np.float64)
  probs = probs / probs.sum(axis=1, keepdims=True)
  # joint[noisy, clean]; T[clean, noisy] is its transpose normalized by row.
  joint = count.estimate_joint(np.asarray(labels), probs)
  mass = joint.sum(axis=0)
  transition = np.where(
      mass[:, None] > 0,
      joint.T / np.where(mass > 0, mass, 1.0)[:, None],
      np.eye(len(mass)),
  )
  return transition, float(1.0 - np.trace(joint))


def estimate(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    filter_outlier: bool = True,
    percentile: float = 97.0,
) -> Estimate:
  """Both estimates from a model's logits on the noisily labelled examples."""
  probs = softmax(logits)
  transition = anchor_transition(
      probs, filter_outlier=filter_outlier, percentile=percentile
  )
  prior = class_prior(labels, probs.shape[1])
  cl_transition, cl_noise_rate = confident_learning(labels, probs)
  return Estimate(
      transition.astype(np.float32),
      np.float32(noise_rate(transition, prior)),
      cl_transition.astype(np.float32),
      np.float32(cl_noise_rate),
  )


# Where a method's noise rate comes from: the true rate (the papers' oracle)
# or an estimate from the predictions of a warm-up model.
SOURCES = ("oracle", "anchor", "cleanlab")


def warmup_epochs(args: ml_collections.ConfigDict, num_epochs: int) -> int:
  """The warm-up before a rate is estimated: ``args.warmup_epochs``, or 10%
  of the run (at least one epoch), as the T-Revision code's 20 of 200."""
  epochs = args.warmup_epochs
  if epochs is None:
    epochs = max(1, round(0.1 * num_epochs))
  if not 1 <= epochs < num_epochs:
    raise errors.UserError(
        f"method_args warmup_epochs={epochs} must be in [1, num_epochs="
        f"{num_epochs}): the rate would never be estimated or used."
    )
  return epochs


def check_source(
    args: ml_collections.ConfigDict, num_epochs: int, source: str
) -> None:
  """An estimated rate needs a warm-up that leaves epochs to use it; the
  oracle has no warm-up, so a warmup_epochs beside it is a mistake."""
  if source != "oracle":
    warmup_epochs(args, num_epochs)
  elif args.warmup_epochs is not None:
    raise errors.UserError(
        f"method_args warmup_epochs={args.warmup_epochs} applies only to an "
        "estimated rate ('anchor' or 'cleanlab'), not to the oracle."
    )


def estimate_rate(logits: np.ndarray, labels: np.ndarray, source: str) -> float:
  """The noise rate estimated from a model's logits on noisy labels by
  ``source``: "anchor" (1 - sum_i prior_i T_ii of the anchor-point T) or
  "cleanlab" (confident learning's off-diagonal mass), clipped to [0, 1]."""
  found = estimate(logits, labels)
  value = found.noise_rate if source == "anchor" else found.cl_noise_rate
  return float(np.clip(value, 0.0, 1.0))


def relative_error(transition: np.ndarray, true: np.ndarray) -> float:
  """sum |T - T_true| / sum |T_true| (T-Revision's `error`, tools.py l.9-11)."""
  return float(np.sum(np.abs(transition - true)) / np.sum(np.abs(true)))


def report(estimate_: Estimate, true: np.ndarray | None) -> dict[str, Any]:
  """The estimate for `method_report`; errors against the true T if known."""
  transition = np.asarray(estimate_.transition)
  cl_transition = np.asarray(estimate_.cl_transition)
  result = {
      "transition": transition,
      "noise_rate_hat": float(estimate_.noise_rate),
      "cl_transition": cl_transition,
      "cl_noise_rate_hat": float(estimate_.cl_noise_rate),
  }
  if true is not None:
    for prefix, estimated in (("", transition), ("cl_", cl_transition)):
      result[f"{prefix}max_abs_error"] = float(np.max(np.abs(estimated - true)))
      result[f"{prefix}relative_error"] = relative_error(estimated, true)
  return result
