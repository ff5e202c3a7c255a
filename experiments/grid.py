"""Grids of runs: presets, the configuration of each run, and where it lives."""

import ast
import dataclasses
import importlib
import os

import ml_collections

from experiments import errors


@dataclasses.dataclass(frozen=True)
class Grid:
  """A set of runs: the product of its fields."""

  configs: tuple[str, ...]
  noise_types: tuple[str, ...]
  noise_rates: tuple[float, ...]
  methods: tuple[str, ...]
  seeds: tuple[int, ...]
  # None: every config keeps its own epochs and lr_milestones (configs of
  # different datasets, each with its source's schedule).
  num_epochs: int | None
  # Methods that run other seeds than `seeds`, as (method, seeds) pairs: the
  # issue's budget is 3 seeds for CE and CDR and 2 for each baseline.
  method_seeds: tuple[tuple[str, tuple[int, ...]], ...] = ()
  # Protocol fields that a method's runs override, as (method, ((field,
  # value), ...)) pairs: a baseline whose official code needs another batch
  # size for its selection to mean anything.
  method_config: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()
  # False: every config keeps its own lr_milestones (the paper's 1-based
  # epochs 10 and 20 whatever the budget) instead of `scaled_milestones`.
  scale_milestones: bool = True

  def seeds_of(self, method: str) -> tuple[int, ...]:
    return dict(self.method_seeds).get(method, self.seeds)

  def config_of(self, method: str) -> dict:
    return dict(dict(self.method_config).get(method, ()))


_ALL_NOISE = ("symmetric", "asymmetric", "pairflip", "instance")
_CE_CDR = ("ce", "cdr_ref", "cdr_paper")
# Co-teaching+ trains on the disagreements of the small-loss examples: at
# the protocol's batch 32 that is 2-3 examples a step; its official batch is
# 128 for every dataset (xingruiyu/coteaching_plus main.py L46).
_OFFICIAL_BATCHES = (("coteaching_plus", (("batch_size", 128),)),)
# Registered methods that are not in the paper's table: `self_paced` is the
# single-network selection that the "MentorNet" rows of Co-teaching's and
# Dual-T's comparisons ran (MentorNet-PD itself is `mentornet`).
NOT_IN_TABLE = ("self_paced",)
REAL_NOISE_CONFIGS = (
    "food101_resnet50", "webvision_mini_inception_resnet_v2",
    "clothing1m_resnet50", "cifar10n_resnet34", "cifar100n_resnet34",
)
_BASELINES = (
    "mentornet", "coteaching", "coteaching_plus", "gce", "apl", "dmi",
    "forward", "t_revision", "joint", "s2e",
)
PRESETS = {
    # The main job: the memorization regime (configs/fashion_mnist_mlp_memorize)
    # at 40% symmetric noise, CE against both CDR flavours, 1 seed: 3 runs of
    # about a minute each on 2 idle cores.
    "main": Grid(
        ("fashion_mnist_mlp_memorize",), ("symmetric",), (0.4,), _CE_CDR,
        (0,), 50,
    ),
    # The paper's table in the memorization regime: 8 settings, every
    # method, 3 seeds for CE and CDR and 2 for the baselines.
    "memorize_table": Grid(
        ("fashion_mnist_mlp_memorize",), _ALL_NOISE, (0.2, 0.4),
        _CE_CDR + _BASELINES, (0, 1, 2), 50,
        method_seeds=tuple((m, (0, 1)) for m in _BASELINES),
        method_config=_OFFICIAL_BATCHES,
    ),
    # Table 2 of the paper: the best split constant vs the noise rate. One
    # seed; the located constant is the tau of best noisy-validation accuracy.
    "tau_sweep": Grid(
        ("fashion_mnist_mlp_memorize",), _ALL_NOISE, (0.2, 0.4),
        tuple(f"cdr_ref:tau={t / 10}" for t in range(1, 8)), (0, 1), 50,
    ),
    # Without the oracle: CDR's tau and Co-teaching's forget rate estimated
    # after a warm-up, beside the same methods with the true rate.
    "unknown_tau": Grid(
        ("fashion_mnist_mlp_memorize",), _ALL_NOISE, (0.2, 0.4),
        ("cdr_ref", "cdr_ref:tau_source='anchor'",
         "cdr_ref:tau_source='cleanlab'", "coteaching",
         "coteaching:forget_rate_source='anchor'"),
        (0,), 50,
    ),
    # LeNet-5 on the whole training set, 8 epochs: a regime where nothing
    # memorizes (32 runs x 8 epochs ~ 1 hour on 2 cores).
    "fmnist_table": Grid(
        ("fashion_mnist_lenet",), _ALL_NOISE, (0.2, 0.4), ("ce", "cdr_ref"),
        (0, 1), 8,
    ),
    "fmnist_mlp": Grid(
        ("fashion_mnist_mlp",), ("symmetric", "instance"), (0.4,),
        ("ce", "cdr_ref"), (0,), 15,
    ),
    # The real-noise benchmarks (issue 21), each config with its source's
    # model, epochs and schedule, on the labels its release ships
    # (noise_type "real"), CE against both CDR flavours, 1 seed: for
    # whoever has the data (tfds food101 / cifar10_n / cifar100_n prepared,
    # the Clothing1M and WebVision folders in --data_dir) and accelerators.
    "real_noise": Grid(
        REAL_NOISE_CONFIGS, ("real",), (0.0,), _CE_CDR, (0,), None,
    ),
}


def scaled_milestones(milestones, num_epochs: int) -> tuple[int, ...]:
  """Scales 1-based milestones so the last one falls at 2/3 of the budget.

  The reference code's 30-epoch F-MNIST schedule, (10, 20) in 1-based
  epochs (its MultiStepLR([10, 20]) stepped at the start of each epoch),
  is its own scaling; a 24-epoch budget gets (8, 16).
  """
  if not milestones:
    return ()
  scale = 2 * num_epochs / (3 * max(milestones))
  scaled = sorted({max(2, round(m * scale)) for m in milestones})
  return tuple(m for m in scaled if m <= num_epochs)


def lr_milestones(config, num_epochs: int | None, override,
                  scale: bool = True) -> tuple[int, ...]:
  """The override, or the config's milestones (scaled to num_epochs; as
  they are for num_epochs None, the config's own budget)."""
  if override is not None:
    return tuple(override)
  if num_epochs is None:
    return tuple(config.lr_milestones)
  if not scale:
    return tuple(m for m in config.lr_milestones if m <= num_epochs)
  return scaled_milestones(config.lr_milestones, num_epochs)


# How reports name the budget of a grid whose configs keep their own.
OWN_SCHEDULE = "each config's own epochs and learning-rate schedule"


def load_config(name: str) -> ml_collections.ConfigDict:
  """The config of `experiments/configs/<name>.py`; ValueError if there is none."""
  try:
    module = importlib.import_module(f"experiments.configs.{name}")
  except ModuleNotFoundError:
    known = sorted(
        f[:-3] for f in os.listdir(os.path.join(os.path.dirname(__file__), "configs"))
        if f.endswith(".py") and f != "__init__.py"
    )
    raise errors.UserError(f"unknown config {name!r}; expected one of {known}.") from None
  return module.get_config()


def runs(grid: Grid) -> list[tuple]:
  """Every (config, noise type, rate, method, seed) of the grid, in order."""
  return [
      (c, t, r, m, s)
      for c in grid.configs
      for t in grid.noise_types
      for r in grid.noise_rates
      for m in grid.methods
      for s in grid.seeds_of(m)
  ]


def parse_method(spec: str) -> tuple[str, dict]:
  """``"cdr_ref"`` or ``"cdr_ref:tau=0.3:..."`` -> (name, argument overrides).

  A grid's methods may fix some of a method's arguments, e.g. the split
  constants of the paper's Table 2: ``--methods=cdr_ref:tau=0.1,cdr_ref:tau=0.2``.
  Values are Python literals (numbers, None, strings in quotes).
  """
  name, *pairs = spec.split(":")
  args = {}
  for pair in pairs:
    field, sep, text = pair.partition("=")
    if not sep:
      raise errors.UserError(f"method {spec!r}: expected field=value, got {pair!r}.")
    try:
      args[field] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      raise errors.UserError(
          f"method {spec!r}: {text!r} is not a number or a quoted string."
      ) from None
  return name, args


def make_config(
    grid: Grid, run: tuple, milestones, overrides: dict
) -> ml_collections.ConfigDict:
  """The configuration of one run of the grid.

  Args:
    grid: the grid.
    run: (config name, noise type, noise rate, method spec, seed); see
      `parse_method`.
    milestones: explicit 1-based milestones, or None to scale the config's.
    overrides: further config fields (data_source, data_dir, ...).
  """
  config_name, noise_type, rate, method, seed = run
  config = load_config(config_name)
  config.noise_type = noise_type
  config.noise_rate = rate
  config.method, args = parse_method(method)
  if config.method not in config.method_args:
    raise errors.UserError(
        f"unknown method {config.method!r}; expected one of "
        f"{tuple(config.method_args)}."
    )
  for field, value in args.items():
    if field not in config.method_args[config.method]:
      raise errors.UserError(
          f"method {config.method!r} has no argument {field!r}; its arguments: "
          f"{sorted(config.method_args[config.method])}."
      )
    config.method_args[config.method][field] = value
  config.seed = seed
  if grid.num_epochs is not None:
    config.num_epochs = grid.num_epochs
  config.lr_milestones = lr_milestones(
      config, grid.num_epochs, milestones, grid.scale_milestones
  )
  for field, value in grid.config_of(config.method).items():
    config[field] = value
  for field, value in overrides.items():
    config[field] = value
  return config


def run_dir(results_dir, config_name, noise_type, rate, method, seed) -> str:
  return os.path.join(
      results_dir,
      "runs",
      config_name,
      f"{noise_type}_{round(100 * rate)}",
      method.replace(":", "_").replace("'", "").replace('"', ""),
      f"seed{seed}",
  )


