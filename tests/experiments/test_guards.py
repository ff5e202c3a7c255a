"""Run guards (issue 22): bad config values, divergence, one writer per
workdir, damaged checkpoints, configs saved by another version."""

import glob
import json
import math
import os
import shutil
import signal
import subprocess
import sys

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import checkpoints as ckpt
from experiments import errors
from experiments import methods
from experiments import packs
from experiments import run_config
from experiments import schema
from experiments import workdir_lock
from experiments.configs import default
from conftest import make_tiny_config
from conftest import REPO


# ---------------------------------------------------------------------------
# Every field, every wrong kind of value (generated from the schema)
# ---------------------------------------------------------------------------


def _finite(low=None, high=None, integer=False, low_open=False, high_open=False):
  """Numbers inside the bounds."""
  if integer:
    return st.integers(
        None if low is None else math.ceil(low) + low_open,
        None if high is None else math.floor(high) - high_open,
    )
  return st.floats(low, high, exclude_min=low_open and low is not None,
                   exclude_max=high_open and high is not None,
                   allow_nan=False, allow_infinity=False)


def _bad_numbers(field: schema.Field, integer: bool) -> dict:
  """Numbers (and look-alikes) that `field` rejects, by kind."""
  kinds = {
      "a string": st.text(max_size=5),
      "a bool": st.booleans(),
      "nan": st.just(math.nan),
      "an infinity": st.sampled_from([math.inf, -math.inf]),
  }
  if integer:
    kinds["a float"] = _finite()
  if field.low is not None:
    kinds["below the range"] = (
        st.integers(max_value=math.ceil(field.low) - 1 + field.low_open)
        if integer else
        st.floats(max_value=field.low, exclude_max=not field.low_open,
                  allow_nan=False, allow_infinity=False))
  if field.high is not None:
    kinds["above the range"] = (
        st.integers(min_value=math.floor(field.high) + 1 - field.high_open)
        if integer else
        st.floats(min_value=field.high, exclude_min=not field.high_open,
                  allow_nan=False, allow_infinity=False))
  return kinds


def wrong_kinds(field: schema.Field) -> dict[str, st.SearchStrategy]:
  """Every kind of value `field` must reject, as a strategy per kind."""
  kinds = {} if field.optional else {"None": st.none()}
  if field.kind == "bool":
    kinds["not a bool"] = st.one_of(st.integers(), st.floats(), st.text())
  elif field.kind == "str":
    kinds["not a string"] = st.one_of(
        st.integers(), st.floats(), st.booleans(), st.tuples(st.text())
    )
    if field.choices is not None:
      known = set(schema._choices(field))  # pylint: disable=protected-access
      kinds["unknown choice"] = st.text().filter(lambda s: s not in known)
  elif field.kind in ("int", "real"):
    kinds.update(_bad_numbers(field, field.kind == "int"))
  else:
    integer = field.kind == "ints"
    element = _finite(field.low, field.high, integer, field.low_open,
                      field.high_open)
    size = field.length or max(field.min_len, 1)
    kinds["not a tuple"] = st.one_of(st.integers(), st.floats(), st.text())
    for name, bad in _bad_numbers(field, integer).items():
      kinds[f"an element {name}"] = st.builds(
          lambda good, b, i: tuple(good[:i] + [b] + good[i:]),
          st.lists(element, min_size=size - 1, max_size=size - 1), bad,
          st.integers(0, size - 1),
      )
    if field.min_len or field.length:
      kinds["empty"] = st.just(())
    if field.length:
      kinds["wrong length"] = st.lists(element, max_size=field.length + 2).filter(
          lambda v: len(v) != field.length).map(tuple)
    if field.increasing:
      kinds["not increasing"] = st.lists(element, min_size=2, max_size=4).filter(
          lambda v: any(a >= b for a, b in zip(v, v[1:]))).map(tuple)
  return kinds


def all_fields() -> dict[tuple[str | None, str], schema.Field]:
  """(method or None, field name) -> its declaration: the config's fields
  and every registered method's arguments."""
  fields = {(None, name): f for name, f in default.FIELDS.items()}
  for method, entry in methods.REGISTRY.items():
    fields.update({(method, name): f for name, f in entry.fields.items()})
  return fields


CASES = [
    (method, name, kind)
    for (method, name), field in all_fields().items()
    for kind in wrong_kinds(field)
]


def kind_counts() -> tuple[dict[str, int], int]:
  """Kinds of bad input per field and in total (the README's figures)."""
  per_field = {
      (f"method_args.{m}.{n}" if m else n): len(wrong_kinds(f))
      for (m, n), f in all_fields().items()
  }
  return per_field, sum(per_field.values())


def _property_config(method, name, value) -> ml_collections.ConfigDict:
  """A one-epoch tiny run with `value` in field `name` (of `method`'s args).

  Built from a plain dict, as a config file may build it: the ConfigDict's
  own type checks (which the command line goes through) are not what is
  tested here.
  """
  values = make_tiny_config(
      model="mlp", mlp_hidden=(16,), num_epochs=1, lr_milestones=(),
      batch_size=48, method=method or "ce",
  ).to_dict()
  if method is None:
    values[name] = value
  else:
    values["method_args"][method][name] = value
  return ml_collections.ConfigDict(values)


_TRAINED: set[tuple] = set()


@pytest.mark.parametrize(
    "method,name,kind", CASES,
    ids=[f"{m or 'config'}.{n}:{k}" for m, n, k in CASES],
)
@hypothesis.settings(max_examples=4, deadline=None, database=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(data=st.data())
def test_every_wrong_kind_of_value_is_one_line_or_trains(
    method, name, kind, data, tmp_path_factory
):
  field = all_fields()[(method, name)]
  value = data.draw(wrong_kinds(field)[kind], label=name)
  config = _property_config(method, name, value)
  try:
    run_config.validate(config)
  except errors.UserError as e:
    message = str(e)
    assert "\n" not in message and name in message, message
    assert repr(value) in message, message
    return
  # Accepted: then it must train, with a finite loss (once per kind: a run
  # takes seconds).
  if (method, name, kind) in _TRAINED:
    return
  _TRAINED.add((method, name, kind))
  from experiments import train  # pylint: disable=g-import-not-at-top
  from conftest import make_tiny_dataset  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp("accepted"))
  train.train_and_evaluate(config, workdir, make_tiny_dataset())
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    assert all(math.isfinite(json.loads(line)["loss"]) for line in f)


def test_the_cases_cover_every_field_and_the_readme_states_their_count():
  per_field, total = kind_counts()
  assert set(per_field) == (
      set(default.FIELDS)
      | {f"method_args.{m}.{n}" for m, e in methods.REGISTRY.items()
         for n in e.fields}
  )
  assert min(per_field.values()) >= 1
  with open(os.path.join(REPO, "README.md")) as f:
    readme = f.read()
  assert (f"{total} kinds of bad value over {len(per_field)} fields"
          in readme), (total, len(per_field))


def test_the_schema_accepts_each_default():
  for (method, name), field in all_fields().items():
    assert schema.is_valid(field.default, field) or field.default is None, name


# ---------------------------------------------------------------------------
# One writer per workdir
# ---------------------------------------------------------------------------


def _holder_process(directory):
  """A process holding `directory`'s lock until its stdin closes."""
  code = (
      "import sys; from experiments import workdir_lock\n"
      f"with workdir_lock.hold({directory!r}):\n"
      "  print('held', flush=True); sys.stdin.read()\n"
  )
  proc = subprocess.Popen(
      [sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE,
      stdout=subprocess.PIPE, text=True,
  )
  assert proc.stdout.readline() == "held\n"
  return proc


def test_a_second_writer_fails_naming_the_holder_and_a_killed_one_frees_it(tmp_path):
  workdir = str(tmp_path / "run")
  proc = _holder_process(workdir)
  try:
    with pytest.raises(errors.UserError,
                       match=f"workdir {workdir} is in use by process {proc.pid} "):
      with workdir_lock.hold(workdir):
        pass
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  # SIGKILL: nothing cleaned up, yet the kernel dropped the lock.
  with workdir_lock.hold(workdir):
    with open(os.path.join(workdir, workdir_lock.LOCK_NAME)) as f:
      assert f.read() == f"{os.getpid()}\n"


def test_a_stale_lock_file_is_free_and_this_process_may_nest(tmp_path):
  # As left by an earlier version in committed run folders: a dead pid.
  (tmp_path / workdir_lock.LOCK_NAME).write_text("9488\n")
  with workdir_lock.hold(str(tmp_path)):
    with workdir_lock.hold(str(tmp_path)):  # main, then the training loop
      pass
  proc = _holder_process(str(tmp_path))
  try:  # Processes other than 0 of a multi-process run write nothing.
    with workdir_lock.hold(str(tmp_path), primary=False):
      pass
  finally:
    proc.kill()
    proc.wait()
  with workdir_lock.hold(str(tmp_path)):
    with open(tmp_path / workdir_lock.LOCK_NAME) as f:
      assert f.read() == f"{os.getpid()}\n"


def test_the_command_lines_fail_at_once_on_a_held_folder(tmp_path):
  proc = _holder_process(str(tmp_path))
  try:
    for argv in (
        ["experiments.main", "--config=experiments/configs/fashion_mnist_mlp.py",
         f"--workdir={tmp_path}"],
        ["experiments.reproduce", "--grid=main", f"--results_dir={tmp_path}"],
    ):
      result = subprocess.run(
          [sys.executable, "-m", *argv], cwd=REPO, capture_output=True,
          text=True, timeout=120,
      )
      assert result.returncode != 0
      assert result.stderr.strip().splitlines()[-1] == (
          f"error: {argv[-1].split('=')[0]} {tmp_path} is in use by process "
          f"{proc.pid} (it holds {tmp_path}/.lock); wait for it to finish, or "
          "stop it first."
      )
      assert not os.path.exists(tmp_path / "checkpoints")
  finally:
    proc.kill()
    proc.wait()


# ---------------------------------------------------------------------------
# Damaged checkpoints
# ---------------------------------------------------------------------------


def _saved_epochs(workdir, config, epochs=(1, 2)):
  """Checkpoints of a small state for `epochs`; returns each epoch's state."""
  states = {}
  with ckpt.manager(workdir, 2) as checkpoints:
    for epoch in epochs:
      state = {"w": jnp.full((300,), float(epoch)), "step": jnp.int32(epoch)}
      ckpt.save(checkpoints, epoch, state, [{"epoch": e} for e in range(1, epoch + 1)],
                config)
      states[epoch] = state
  return states


def _damage(path, how):
  if how == "delete":
    os.remove(path)
  else:
    os.truncate(path, os.path.getsize(path) // 2 if how == "half" else 0)


_DAMAGES = [
    ("state/d/*", "half"),  # the arrays' data
    ("state/d/*", "delete"),
    ("state/manifest.ocdbt", "zero"),
    ("state/_METADATA", "half"),
    ("history/metadata", "zero"),
    ("config/metadata", "delete"),
]


@pytest.mark.parametrize("pattern,how", _DAMAGES)
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(
    tmp_path, capsys, pattern, how
):
  config = make_tiny_config()
  states = _saved_epochs(str(tmp_path), config)
  for path in glob.glob(str(tmp_path / "checkpoints" / "2" / pattern)):
    _damage(path, how)
  template = jax.tree.map(jnp.zeros_like, states[1])
  with ckpt.manager(str(tmp_path), 2) as checkpoints:
    state, history = ckpt.restore(checkpoints, template, config)[:2]
    assert checkpoints.all_steps() == [1]
    # The run goes on: epoch 2 is saved again.
    ckpt.save(checkpoints, 2, states[2], [{"epoch": 1}, {"epoch": 2}], config)
  np.testing.assert_array_equal(state["w"], states[1]["w"])
  assert history == [{"epoch": 1}]
  warning = capsys.readouterr().err.strip().splitlines()[-1]
  assert warning.startswith(
      f"warning: checkpoint 2 in {tmp_path}/checkpoints cannot be read (")
  assert warning.endswith(", resuming from checkpoint 1.")
  (aside,) = glob.glob(str(tmp_path / ckpt.DAMAGED / "2-*"))
  assert aside in warning  # kept for a look, not deleted


def test_no_readable_checkpoint_is_one_line_and_moves_nothing(tmp_path):
  config = make_tiny_config()
  states = _saved_epochs(str(tmp_path), config)
  for epoch in (1, 2):
    for path in glob.glob(str(tmp_path / "checkpoints" / str(epoch) / "state/d/*")):
      _damage(path, "half")
  with ckpt.manager(str(tmp_path), 2) as checkpoints:
    with pytest.raises(errors.UserError) as e:
      ckpt.restore(checkpoints, states[1], config)
    assert checkpoints.all_steps() == [1, 2]
  message = str(e.value)
  assert "\n" not in message
  assert message.startswith(
      f"no checkpoint in {tmp_path}/checkpoints can be read (the newest, 2: ")
  assert not os.path.exists(tmp_path / ckpt.DAMAGED)


# ---------------------------------------------------------------------------
# A configuration saved by another version
# ---------------------------------------------------------------------------


def test_a_saved_config_with_unknown_or_missing_fields_is_one_line():
  config = make_tiny_config()
  saved = run_config.as_dict(config)
  newer = {**saved, "fancy_new_field": 3}
  with pytest.raises(errors.UserError, match=(
      r"^/w was written by another version of this code: its configuration has "
      r"fields this version does not know \(fancy_new_field\)\. ")):
    run_config.differences(newer, config, source="/w")
  older = {k: v for k, v in saved.items() if k not in ("lr_decay", "momentum")}
  with pytest.raises(errors.UserError,
                     match=r"lacks fields this version needs \(lr_decay, momentum\)"):
    run_config.differences(older, config)
  saved["method_args"] = {**saved["method_args"], "old_arg": 1}
  with pytest.raises(errors.UserError, match=r"\(method_args\.old_arg\)"):
    run_config.differences(saved, config)


def test_a_saved_config_without_a_backfilled_field_reads_as_its_default():
  backfilled = [n for n, f in default.FIELDS.items() if f.backfill]
  assert backfilled  # the rule is exercised
  config = make_tiny_config()
  older = {k: v for k, v in run_config.as_dict(config).items()
           if k not in backfilled}
  assert run_config.differences(older, config) == []
  name = next(n for n in backfilled if n not in run_config.RESUMABLE_CHANGES
              and default.FIELDS[n].kind == "str" and default.FIELDS[n].choices)
  other = next(c for c in schema._choices(default.FIELDS[name])  # pylint: disable=protected-access
               if c != default.FIELDS[name].default)
  config[name] = other
  assert run_config.differences(older, config) == [
      f"{name}: {default.FIELDS[name].default!r} -> {other!r}"
  ]


def test_every_committed_run_is_readable_by_this_version():
  """Committed grids predate fields added since: each packed run's config
  must still read as the same run, so that its grid resumes from the pack
  (and a workdir of the running regimes grid, where one is on disk)."""
  saved_configs = []
  for pack in glob.glob(os.path.join(REPO, "experiments/results/*/runs.jsonl.gz")):
    _, runs = packs.read(pack)
    saved_configs += [(f"{pack}: {key}", run["summary"]["config"])
                      for key, run in runs.items() if "summary" in run]
  for path in glob.glob(os.path.join(
      REPO, "experiments/results/regimes/runs/**/config.json"), recursive=True):
    with open(path) as f:
      saved_configs.append((path, json.load(f)))
  assert saved_configs
  for path, saved in saved_configs:
    config = default.get_config()
    for key, value in saved.items():
      if key == "method_args":
        config.method_args[saved["method"]].update(value)
      elif key in config:
        config[key] = tuple(value) if isinstance(value, list) else value
    assert run_config.differences(saved, config, source=path) == [], path


# ---------------------------------------------------------------------------
# Divergence stops the run
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("steps_per_call,where", [(1, "step 14"), (4, "steps 14-17")])
def test_divergence_stops_the_run_naming_epoch_and_step(tmp_path, steps_per_call, where):
  from experiments import divergence  # pylint: disable=g-import-not-at-top
  from experiments import train  # pylint: disable=g-import-not-at-top
  from conftest import make_tiny_dataset  # pylint: disable=g-import-not-at-top
  # Epoch 1 at lr 0.01 is fine; from epoch 2 the rate is 1e6 (9 steps an epoch).
  config = make_tiny_config(model="mlp", mlp_hidden=(16,), method="ce",
                            lr_milestones=(2,), lr_decay=1e8,
                            steps_per_call=steps_per_call)
  workdir = str(tmp_path)
  with pytest.raises(divergence.Diverged) as e:
    train.train_and_evaluate(config, workdir, make_tiny_dataset())
  assert str(e.value) == (
      f"training diverged in epoch 2, {where}: non-finite metrics "
      "(train_loss=nan). Epoch 2 was not saved (the newest checkpoint is "
      "epoch 1); try a lower learning rate."
  )
  assert isinstance(e.value, errors.UserError)  # cli: one line, exit status 1
  assert os.listdir(tmp_path / "checkpoints") == ["1"]
  assert not os.path.exists(tmp_path / "summary.json")
  with open(tmp_path / "metrics.jsonl") as f:
    assert [json.loads(line)["epoch"] for line in f] == [1]
  # The kept checkpoint is finite.
  with ckpt.manager(workdir, 2) as checkpoints:
    saved = checkpoints.restore(1, args=ocp.args.Composite(
        state=ocp.args.StandardRestore())).state
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(saved)
             if np.issubdtype(np.asarray(x).dtype, np.inexact))


def test_nonfinite_parameters_with_finite_metrics_are_caught():
  from experiments import divergence  # pylint: disable=g-import-not-at-top
  watch = divergence.Watch()
  good = {"loss": jnp.float32(1.0)}
  for step in (3, 6):
    watch.after_call({"w": jnp.ones(3)}, good, {"step": step, "num_steps": 3})
  with pytest.raises(divergence.Diverged, match=(
      r"^training diverged in epoch 2, steps 7-9: non-finite parameters\. ")):
    watch.check({"w": jnp.array([1.0, jnp.inf, 0.0])},
                {"epoch": 2, "step": 9, "loss": 1.0})
  watch.check({"w": jnp.ones(3)}, {"epoch": 3, "step": 12, "loss": 1.0})
  with pytest.raises(divergence.Diverged, match="by step 40: non-finite"):
    divergence.check_call({"w": jnp.full(2, jnp.nan)}, good,
                          {"epoch": 5, "step": 40})


def test_a_grid_skips_a_diverged_run_and_its_table_says_so(tmp_path):
  from experiments import divergence  # pylint: disable=g-import-not-at-top
  from experiments import grid as grid_lib  # pylint: disable=g-import-not-at-top
  from experiments import report  # pylint: disable=g-import-not-at-top
  from experiments import reproduce  # pylint: disable=g-import-not-at-top
  grid = grid_lib.Grid(("mnist_lenet",), ("symmetric",), (0.2,), ("ce", "gce"),
                       (0, 1), 3)
  config = make_tiny_config(method="ce")
  for seed in (0, 1):
    workdir = grid_lib.run_dir(str(tmp_path), "mnist_lenet", "symmetric", 0.2,
                               "ce", seed)
    os.makedirs(workdir)
    divergence.mark(workdir, config, divergence.Diverged("boom", 2, 14))
  assert reproduce.is_finished(workdir, config)  # not trained again
  other = make_tiny_config(method="ce", learning_rate=0.5)
  with pytest.raises(errors.UserError, match="another configuration"):
    reproduce.is_finished(workdir, other)
  diverged = {("mnist_lenet", "symmetric", 0.2, "ce"): 2}
  cells = {("mnist_lenet", "symmetric", 0.2, m): [] for m in ("ce", "gce")}
  text = report.markdown_report(grid, (2,), cells, diverged)
  assert "| ce | 2 diverged |" in text and "| gce | - |" in text
  assert "nan" not in text
  assert divergence.cell("91.00+-0.50", 1) == "91.00+-0.50, diverged"
