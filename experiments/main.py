r"""Trains one model on a noisy-label dataset with one method (CE, CDR, ...).

Example:

  python -m experiments.main \
    --config=experiments/configs/fashion_mnist_lenet.py \
    --workdir=/tmp/fmnist_cdr \
    --config.noise_type=instance --config.noise_rate=0.4 \
    --config.method=cdr_paper

Every field of the config file can be overridden with --config.<field>=...
(see experiments/configs/default.py for the fields and what they mean).
The workdir receives config.json (the run's configuration), metrics.jsonl
(one line per epoch), summary.json and checkpoints/; running the same command
again resumes from the last checkpoint.
"""

import json

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import cli
from experiments import distributed
from experiments import errors
from experiments import run_config
from experiments import train
from experiments import workdir_lock
from experiments.configs import default

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for metrics, summary and checkpoints."
)
config_flags.DEFINE_config_file(
    "config",
    None,
    "Path to a config file (experiments/configs/*.py); override any field with "
    "--config.<field>=<value>. Fields (defaults of configs/default.py): "
    + ", ".join(f"{k}={v}" for k, v in default.get_config().items()),
    lock_config=True,
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # Progress is printed; absl's INFO lines (backend probing, a dozen per
  # orbax checkpoint) would bury it.
  logging.set_verbosity(logging.WARNING)
  # Checked here rather than marked required at import: importing this
  # module (tests, notebooks) must not add validators to every later parse.
  missing = [f"--{name}" for name in ("config", "workdir")
             if flags.FLAGS[name].value is None]
  if missing:
    raise errors.UserError(
        f"{' and '.join(missing)} required (--helpshort lists the flags).")
  config = flags.FLAGS.config
  run_config.validate(config)  # Before anything starts JAX or reads data.
  cli.check_output_dir(_WORKDIR.value, "--workdir")
  distributed.initialize_from_flags()
  distributed.quiet_unless_writer()
  with workdir_lock.hold(_WORKDIR.value, "--workdir",
                         primary=distributed.is_writer()):
    summary = train.train_and_evaluate(config, _WORKDIR.value)
  if summary is None:
    print(f"Stopped early; rerun the same command to resume in {_WORKDIR.value}")
    return
  print(
      json.dumps(
          {k: v for k, v in summary.items() if k != "config"}, indent=2
      )
  )
  print(f"Results in {_WORKDIR.value}/summary.json and metrics.jsonl")


if __name__ == "__main__":
  cli.run(main)
