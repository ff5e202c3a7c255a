r"""S2E's outer loop: searches the schedule R(t) of the ``s2e`` method.

Example (the tiny CPU budget, 2 iterations x 2 samples = 4 short trainings):

  python -m experiments.s2e_search \
    --config=experiments/configs/fashion_mnist_mlp.py --workdir=/tmp/s2e \
    --config.noise_type=symmetric --config.noise_rate=0.4 \
    --config.num_train_examples=2000 --config.num_epochs=3

then train with the result (printed, and in <workdir>/best_params.json):

  python -m experiments.main ... --config.method=s2e \
    --config.method_args.s2e.params="(0.41, 0.77, ...)"

The search (AutoML-4Paradigm/S2E heng_main.py L276-323): each of the 12
schedule parameters (see ``experiments/methods/s2e.py``) is drawn from its own
Beta(a_k, b_k), all starting at Beta(1, 1); every iteration draws
``n_samples`` parameter vectors, trains the ``s2e`` method once per vector
(through ``experiments.train.train_and_evaluate``, the only place that runs
the loop repeatedly), scores each by its validation accuracy, and moves
(a, b) by one second-order step; a and b are kept >= 1 (L323). Two rules:

* ``--update=official``: the official estimator, from the best sample x* only
  (L311-322): g = d log p(x*) / n, H = (d log p(x*) d log p(x*)^T +
  d^2 log p) / n, singular values of H floored at 1e-5, and the step
  delta * H^-1 (.) g computed as the code does: ``hessian * hypgrad`` is
  numpy's broadcast product, so component i moves by delta * H^-1[i, 0] g_i
  (not the matrix product).
* ``--update=natural``: the textbook natural gradient of J = E[score]:
  g = mean_k (score_k - mean score) d log p(x_k), the Beta's exact Fisher
  matrix F = -d^2 log p, and the step delta * F^-1 g.

The score: the validation accuracy of the last epoch (``--objective=final``,
as the official code, which returns its last epoch's accuracy, L274) or the
best epoch's (``best``). The official code scores on a clean half of the
test set; the protocol here has only the noisy validation split.

Budget: the official runs use ``--n_iter 10 --n_samples 6`` (README.md), 60
trainings of 200 epochs each (``--budget=official``). The default
``--budget=cpu`` is 2 x 2 trainings of the config's num_epochs, for a
laptop; ``--n_iter`` / ``--n_samples`` override either. Each training has its
own workdir (iter<i>_sample<j>/), so an interrupted search, run again with
the same flags, reuses the finished trainings. The best sample over the
whole search (the official code only logs every run) goes to
<workdir>/best_params.json, the whole history to <workdir>/s2e_search.json.
"""

import copy
import json
import os
from typing import Any, Callable

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags
import numpy as np
from scipy import special

from experiments import atomic
from experiments import data as data_lib
from experiments import train
from experiments.methods import s2e

# (n_iter, n_samples): README.md's command line, and a CPU budget.
BUDGETS = {"official": (10, 6), "cpu": (2, 2)}
# Singular values of the official Hessian estimate are floored here (L318).
_MIN_SINGULAR_VALUE = 1e-5
# Beta samples are kept this far inside (0, 1), where log x is finite.
_EPS = 1e-9

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the search.")
_BUDGET = flags.DEFINE_enum(
    "budget", "cpu", list(BUDGETS),
    "official: 10 iterations x 6 samples (README.md); cpu: 2 x 2.",
)
_N_ITER = flags.DEFINE_integer("n_iter", None, "Iterations (overrides budget).")
_N_SAMPLES = flags.DEFINE_integer(
    "n_samples", None, "Trainings per iteration (overrides budget)."
)
_DELTA = flags.DEFINE_float(
    "delta", 1.0, "Step size (heng_main.py L31; heng_mnist.sh uses 1)."
)
_UPDATE = flags.DEFINE_enum(
    "update", "official", ["official", "natural"],
    "The distribution's update rule (see the module docstring).",
)
_OBJECTIVE = flags.DEFINE_enum(
    "objective", "final", ["final", "best"],
    "Validation accuracy of the last epoch (official) or of the best epoch.",
)
config_flags.DEFINE_config_file(
    "config", None,
    "A training config (experiments/configs/*.py); --config.<field>=... "
    "overrides. Its method is set to s2e.",
    lock_config=True,
)


def beta_score(hyper: np.ndarray, x: np.ndarray) -> np.ndarray:
  """d log prod_k Beta(x_k; a_k, b_k) / d(a_1, b_1, a_2, ...), shape (2K,)."""
  a, b = hyper[0::2], hyper[1::2]
  common = special.digamma(a + b)
  score = np.empty_like(hyper)
  score[0::2] = np.log(x) + common - special.digamma(a)
  score[1::2] = np.log1p(-x) + common - special.digamma(b)
  return score


def beta_log_hessian(hyper: np.ndarray) -> np.ndarray:
  """The Hessian of log p in (a, b) (the same for every x): 2x2 blocks."""
  a, b = hyper[0::2], hyper[1::2]
  common = special.polygamma(1, a + b)
  hessian = np.zeros((hyper.size, hyper.size))
  for k in range(a.size):
    i, j = 2 * k, 2 * k + 1
    hessian[i, i] = common[k] - special.polygamma(1, a[k])
    hessian[j, j] = common[k] - special.polygamma(1, b[k])
    hessian[i, j] = hessian[j, i] = common[k]
  return hessian


def official_step(
    hyper: np.ndarray, samples: np.ndarray, scores: np.ndarray, delta: float
) -> np.ndarray:
  """heng_main.py L311-323: a Newton-like step towards the best sample."""
  n = len(scores)
  best = beta_score(hyper, samples[int(np.argmax(scores))])
  grad = best / n
  hessian = (np.outer(best, best) + beta_log_hessian(hyper)) / n
  u, s, vh = np.linalg.svd(hessian, full_matrices=False)
  inverse = np.linalg.inv(u @ np.diag(np.maximum(s, _MIN_SINGULAR_VALUE)) @ vh)
  step = delta * inverse[:, 0] * grad  # The code's broadcast product.
  return np.maximum(hyper + step, 1.0)


def natural_step(
    hyper: np.ndarray, samples: np.ndarray, scores: np.ndarray, delta: float
) -> np.ndarray:
  """delta F^-1 grad J, J = E[score], with the baseline mean(scores)."""
  advantages = scores - np.mean(scores)
  grad = np.mean(
      [w * beta_score(hyper, x) for w, x in zip(advantages, samples)], axis=0
  )
  fisher = -beta_log_hessian(hyper)
  return np.maximum(hyper + delta * np.linalg.solve(fisher, grad), 1.0)


UPDATES = {"official": official_step, "natural": natural_step}


def draw(rng: np.random.Generator, hyper: np.ndarray, n: int) -> np.ndarray:
  """(n, K) Beta samples on (0, 1)."""
  x = rng.beta(hyper[0::2], hyper[1::2], size=(n, hyper.size // 2))
  return np.clip(x, _EPS, 1 - _EPS)


def search(
    objective: Callable[[np.ndarray, int, int], float],
    *,
    n_iter: int,
    n_samples: int,
    rng: np.random.Generator,
    delta: float = 1.0,
    update: str = "official",
) -> dict[str, Any]:
  """The outer loop.

  Args:
    objective: (schedule params (K,), iteration, sample) -> score to maximize.
    n_iter: iterations.
    n_samples: samples (trainings) per iteration.
    rng: the sampling stream.
    delta: step size.
    update: "official" or "natural".

  Returns:
    {"samples": [...], "best": the highest-scoring sample, "hyper": the final
    Beta parameters (a_1, b_1, a_2, ...)}.
  """
  hyper = np.ones(2 * s2e.NUM_PARAMS)  # Beta(1, 1) (heng_main.py L283).
  history = []
  for iteration in range(n_iter):
    samples = draw(rng, hyper, n_samples)
    scores = np.empty(n_samples)
    for j, x in enumerate(samples):
      params = x * s2e.PARAM_UPPER
      scores[j] = objective(params, iteration, j)
      history.append({
          "iteration": iteration, "sample": j,
          "params": params.tolist(), "score": float(scores[j]),
      })
    hyper = UPDATES[update](hyper, samples, scores, delta)
  best = max(history, key=lambda r: r["score"])
  return {"samples": history, "best": best, "hyper": hyper.tolist()}


def training_objective(
    config: ml_collections.ConfigDict,
    workdir: str,
    dataset: data_lib.Dataset,
    objective: str,
) -> Callable[[np.ndarray, int, int], float]:
  """Trains `s2e` with the given schedule; returns a validation accuracy."""
  def run(params, iteration, sample):
    run_config = copy.deepcopy(config)
    run_config.method = "s2e"
    run_config.method_args.s2e.params = tuple(float(p) for p in params)
    run_dir = os.path.join(workdir, f"iter{iteration}_sample{sample}")
    summary = train.train_and_evaluate(run_config, run_dir, dataset)
    if objective == "best":
      score = summary["best_val_acc"]
    else:
      with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        score = json.loads(f.readlines()[-1])["val_acc"]
    print(f"{run_dir}: validation accuracy {score:.4f}", flush=True)
    return score

  return run


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # One line per training (above) instead of the loop's and orbax's logs.
  logging.set_verbosity(logging.WARNING)
  # Checked here, not marked required at import (see experiments/main.py).
  missing = [f"--{name}" for name in ("config", "workdir")
             if flags.FLAGS[name].value is None]
  if missing:
    raise app.UsageError(f"{' and '.join(missing)} required.")
  config = flags.FLAGS.config
  workdir = _WORKDIR.value
  n_iter, n_samples = BUDGETS[_BUDGET.value]
  n_iter = n_iter if _N_ITER.value is None else _N_ITER.value
  n_samples = n_samples if _N_SAMPLES.value is None else _N_SAMPLES.value
  dataset = data_lib.load_dataset(
      config.dataset, source=config.data_source, data_dir=config.data_dir
  )
  os.makedirs(workdir, exist_ok=True)
  result = search(
      training_objective(config, workdir, dataset, _OBJECTIVE.value),
      n_iter=n_iter,
      n_samples=n_samples,
      rng=np.random.default_rng(config.seed),
      delta=_DELTA.value,
      update=_UPDATE.value,
  )
  result["settings"] = {
      "n_iter": n_iter, "n_samples": n_samples, "delta": _DELTA.value,
      "update": _UPDATE.value, "objective": _OBJECTIVE.value,
  }
  atomic.write_json(os.path.join(workdir, "s2e_search.json"), result)
  atomic.write_json(os.path.join(workdir, "best_params.json"), result["best"])
  params = ", ".join(f"{p:.6g}" for p in result["best"]["params"])
  print(f"best validation accuracy {result['best']['score']:.4f}; train with")
  print(f'  --config.method=s2e --config.method_args.s2e.params="({params})"')
  print(f"Search in {workdir}/s2e_search.json and best_params.json")


if __name__ == "__main__":
  app.run(main)
