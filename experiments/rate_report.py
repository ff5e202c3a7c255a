"""The report's sections about the noise rate, where a grid has them.

* The located split constant (the paper's Table 2): in a grid whose methods
  are one method at several values of ``tau``, per setting the tau of best
  mean noisy-validation accuracy, beside the true rate and the paper's
  located constant, and a plot of accuracy against tau.
* Estimates: the noise rate and transition matrix that methods estimated
  from a warm-up model (``method_report`` of CDR with an unknown rate,
  Forward and T-Revision), beside the truth, and for CDR the accuracy with
  the estimate against the accuracy with the oracle.
"""

import io
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from experiments import atomic
from experiments import grid as grid_lib
from experiments import plots

# The paper's located split constants on F-MNIST (Xia et al. 2021, Table 2):
# the tau of best noisy-validation accuracy, ResNet-50, 100 epochs.
PAPER_LOCATED = {
    ("fashion_mnist", t, r): v
    for (t, r), v in zip(
        [(t, r) for t in ("symmetric", "asymmetric", "pairflip", "instance")
         for r in (0.2, 0.4)],
        (0.20, 0.40, 0.20, 0.50, 0.30, 0.50, 0.20, 0.60),
    )
}


def _mean(runs, value) -> float | None:
  values = [v for run in runs if (v := value(run)) is not None]
  return statistics.fmean(values) if values else None


def _pct(value) -> str:
  return "-" if value is None else f"{100 * value:.2f}"


def _num(value) -> str:
  return "-" if value is None else f"{value:.3f}"


def swept_taus(grid) -> dict[str, float] | None:
  """{method spec: tau} if the grid sweeps one method's tau, else None."""
  parsed = [grid_lib.parse_method(m) for m in grid.methods]
  names = {name for name, _ in parsed}
  if len(names) != 1 or not all("tau" in args for _, args in parsed):
    return None
  taus = {m: args["tau"] for m, (_, args) in zip(grid.methods, parsed)}
  return taus if len(set(taus.values())) > 1 else None


def _settings(grid):
  return [(c, t, r) for c in grid.configs for t in grid.noise_types
          for r in grid.noise_rates]


def _best_val(runs):
  return _mean(runs, lambda run: run["summary"]["best_val_acc"])


def _test_at_best_val(runs):
  return _mean(runs, lambda run: run["summary"]["test_acc_at_best_val"])


def split_constant_section(grid, runs) -> str:
  """Markdown: the located tau per setting (empty if the grid sweeps none)."""
  taus = swept_taus(grid)
  if taus is None:
    return ""
  lines = [
      "\n## Located split constant (the paper's Table 2)\n\n"
      "The tau of best mean noisy-validation accuracy, as the paper locates "
      "it; test accuracy (%) at the best-validation epoch.\n\n"
      "| setting | true rate | located tau | paper's located tau | "
      "test acc at located | test acc at tau = rate | best test acc (tau) |\n"
      "|---|---|---|---|---|---|---|\n"
  ]
  for setting in _settings(grid):
    scores = {m: _best_val(runs[(*setting, m)]) for m in grid.methods}
    scores = {m: v for m, v in scores.items() if v is not None}
    if not scores:
      continue
    located = max(scores, key=scores.get)
    tests = {m: _test_at_best_val(runs[(*setting, m)]) for m in scores}
    at_rate = [m for m in scores if abs(taus[m] - setting[2]) < 1e-9]
    best_test = max(tests, key=tests.get)
    dataset = runs[(*setting, located)][0]["summary"]["dataset"]
    paper = PAPER_LOCATED.get((dataset, setting[1], setting[2]))
    lines.append(
        f"| {plots.setting_name(*setting, len(grid.configs) > 1)} | "
        f"{setting[2]:.2f} | {taus[located]:.2f} | "
        f"{'-' if paper is None else f'{paper:.2f}'} | "
        f"{_pct(tests[located])} | "
        f"{_pct(tests[at_rate[0]]) if at_rate else '-'} | "
        f"{_pct(tests[best_test])} ({taus[best_test]:.2f}) |\n"
    )
  return "".join(lines)


def plot_split_constant(grid, runs, path) -> bool:
  """Test accuracy at best validation vs tau, one curve per setting, the
  true rate marked; False (nothing written) if the grid sweeps no tau."""
  taus = swept_taus(grid)
  if taus is None:
    return False
  fig, (ax_test, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
  drawn = False
  for setting in _settings(grid):
    points = sorted(
        (taus[m], _test_at_best_val(runs[(*setting, m)]),
         _best_val(runs[(*setting, m)]))
        for m in grid.methods if runs[(*setting, m)]
    )
    if not points:
      continue
    drawn = True
    xs = [p[0] for p in points]
    name = plots.setting_name(*setting, len(grid.configs) > 1)
    (line,) = ax_test.plot(xs, [100 * p[1] for p in points], "o-", label=name)
    ax_val.plot(xs, [100 * p[2] for p in points], "o-", color=line.get_color())
    for ax in (ax_test, ax_val):
      ax.axvline(setting[2], color=line.get_color(), linestyle=":",
                 linewidth=1)
  if not drawn:
    plt.close(fig)
    return False
  ax_test.set_ylabel("test acc at best val (%)")
  ax_val.set_ylabel("best noisy val acc (%)")
  for ax in (ax_test, ax_val):
    ax.set_xlabel("split constant tau (dotted: the setting's true rate)")
    ax.grid(alpha=0.3)
  # Below the panels: inside, it covered some of the curves.
  handles, labels = ax_test.get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", fontsize="small",
             ncol=min(len(labels), 8))
  summaries = [run["summary"] for found in runs.values() for run in found]
  fig.suptitle(
      f"{plots.describe_runs(summaries)}: CDR's split constant tau, "
      f"{grid.num_epochs} epochs\nmean over seeds {list(grid.seeds)} per "
      "noise setting (legend) of the best noisy-validation epoch",
      fontsize="medium")
  fig.tight_layout(rect=(0, 0.07 * -(-len(labels) // 8), 1, 1))
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  plt.close(fig)
  atomic.write_atomic(path, buffer.getvalue())
  return True


def _report_value(key):
  return lambda run: run["summary"].get("method_report", {}).get(key)


def estimates_section(grid, runs) -> str:
  """Markdown: estimated rates and transition errors (empty if none)."""
  lines = []
  for setting in _settings(grid):
    for m in grid.methods:
      found = runs[(*setting, m)]
      tau_hat = _mean(found, _report_value("estimated_tau"))
      rate_hat = _mean(found, _report_value("noise_rate_hat"))
      if tau_hat is None and rate_hat is None:
        continue
      realized = _mean(found, lambda run: run["summary"]["realized_noise_rate"])
      # The same method with the oracle rate: its name without arguments.
      name = grid_lib.parse_method(m)[0]
      oracle = None
      if tau_hat is not None and name != m and name in grid.methods:
        oracle = _test_at_best_val(runs[(*setting, name)])
      lines.append(
          f"| {plots.setting_name(*setting, len(grid.configs) > 1)} | {m} | "
          f"{setting[2]:.2f} ({realized:.3f}) | "
          f"{_num(tau_hat if tau_hat is not None else rate_hat)} | "
          f"{_num(_mean(found, _report_value('cl_noise_rate_hat')))} | "
          f"{_num(_mean(found, _report_value('max_abs_error')))} | "
          f"{_num(_mean(found, _report_value('cl_max_abs_error')))} | "
          f"{_pct(_test_at_best_val(found))} | "
          f"{_pct(oracle)} |\n"
      )
  if not lines:
    return ""
  return (
      "\n## Estimated noise rates and transition matrices\n\n"
      "Estimated from the warm-up model's predictions on the noisy training "
      "split; mean over seeds. rate_hat = 1 - sum_i prior_i T_ii by anchor "
      "points (for CDR with tau_source='cleanlab', the confident-learning "
      "estimate it used); cl = confident learning (cleanlab); error = max "
      "|T_hat - T| against the true transition matrix. The last two columns: "
      "test accuracy (%) at best validation of this method and of the same "
      "method with the true rate (where the grid has it).\n\n"
      "| setting | method | true rate (realized) | rate_hat | cl rate_hat | "
      "error | cl error | test acc | with the oracle rate |\n"
      "|---|---|---|---|---|---|---|---|---|\n"
      + "".join(lines)
  )
