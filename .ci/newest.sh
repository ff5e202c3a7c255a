#!/usr/bin/env bash
# Does optax_cdr still work with the newest versions the registry serves?
# Installs the package with its test extras, unpinned, into a fresh venv
# under /tmp, prints every version that differs from .ci/constraints.txt,
# and runs the import and a short smoke test there. Not part of CI: it
# answers "what breaks on a fresh machine today", on any machine. "Newest"
# is what the index pip is configured with serves (PIP_INDEX_URL and
# PIP_EXTRA_INDEX_URL choose another).
#
#   bash .ci/newest.sh            # keeps nothing; exit status = the tests'
#   KEEP=1 bash .ci/newest.sh     # keeps the venv and prints its path
#   REV=<commit> bash .ci/newest.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/optax_cdr_newest.XXXXXX)"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT INT TERM

# The committed tree (REV, default HEAD), outside the checkout: the build
# and the tests must not write into it (egg-info, caches), and half-done
# edits in it are not what is being checked.
mkdir "$work/src"
git -C "$repo" archive "${REV:-HEAD}" | tar -x -C "$work/src"

python3 -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q --upgrade "$work/src[test]"

echo "== versions that differ from .ci/constraints.txt (pinned -> newest)"
"$py" -m pip freeze > "$work/freeze.txt"
"$py" - "$repo/.ci/constraints.txt" "$work/freeze.txt" <<'PY'
import sys

def versions(path):
  pairs = (line.strip().split("==") for line in open(path)
           if "==" in line and not line.startswith("#"))
  return {name.lower().replace("_", "-"): (name, v) for name, v in pairs}

pinned, newest = versions(sys.argv[1]), versions(sys.argv[2])
for key, (name, version) in sorted(newest.items()):
  if key in pinned and pinned[key][1] != version:
    print(f"  {name}: {pinned[key][1]} -> {version}")
PY
"$py" -c "import jax, flax, optax; print('  jax', jax.__version__, '/ flax', flax.__version__, '/ optax', optax.__version__)"

echo "== import and smoke test"
cd "$work/src"
"$py" -c "import optax_cdr, experiments.train, experiments.reproduce"
# The library against the API it uses (optax: schedules, inject_hyperparams,
# MultiSteps, chains; flax: nnx.Optimizer, linen TrainState; its docstring
# examples), one training run end to end with resumption (orbax, a tiny
# dataset), and the report's packs and plots (matplotlib): a few minutes.
"$py" -m pytest -q -x -p no:cacheprovider tests/library/test_doctests.py \
  tests/library/test_cdr.py -k "not test_matches_numpy_reference and not test_property" \
  tests/experiments/test_train.py::test_end_to_end_and_resume_after_interruption \
  tests/experiments/test_report.py
[ -z "${KEEP:-}" ] || echo "venv kept in $work/venv"
