"""The front page and docs/: links resolve, the library's snippets run."""

import os
import re

import jax.numpy as jnp
import optax
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = sorted(
    [os.path.join(REPO, "README.md"),
     os.path.join(REPO, "experiments", "results", "README.md")]
    + [os.path.join(REPO, "docs", f)
       for f in os.listdir(os.path.join(REPO, "docs")) if f.endswith(".md")]
)
# [text](target) outside code spans; images too.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(path: str) -> set[str]:
  """GitHub's heading slugs: lowercase, punctuation dropped, spaces -> '-'."""
  with open(path) as f:
    headings = [line.lstrip("#").strip() for line in f
                if line.startswith("#") and not line.startswith("#!")]
  return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-")
          for h in headings}


def _links(path: str):
  with open(path) as f:
    text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
  for target in _LINK.findall(re.sub(r"`[^`]*`", "", text)):
    if not re.match(r"[a-z]+:", target):
      yield target


@pytest.mark.parametrize("path", DOCS, ids=lambda p: os.path.relpath(p, REPO))
def test_every_relative_link_resolves(path):
  broken = []
  for target in _links(path):
    file, _, anchor = target.partition("#")
    resolved = os.path.normpath(
        os.path.join(os.path.dirname(path), file)) if file else path
    if not os.path.exists(resolved):
      broken.append(target)
    elif anchor and anchor not in _anchors(resolved):
      broken.append(target)
  assert not broken, broken


def test_the_front_page_is_short_and_runs_the_ci_command():
  with open(os.path.join(REPO, "README.md")) as f:
    readme = f.read()
  assert len(readme.splitlines()) < 150
  with open(os.path.join(REPO, ".ci", "run")) as f:
    ci = f.read()
  command = 'python -m pytest -m "not slow" -q'
  assert command in ci and command in readme.split("\n\n")[1]


def _python_blocks(path: str) -> list[str]:
  with open(path) as f:
    return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_the_readme_snippet_updates_parameters():
  params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
  grads = {"w": jnp.arange(12.0).reshape(4, 3), "b": jnp.ones(3)}
  namespace = {"params": params, "grads": grads}
  (snippet,) = _python_blocks(os.path.join(REPO, "README.md"))
  exec(snippet, namespace)  # pylint: disable=exec-used
  # tau = 0.2 of the 12 ranked kernel entries are not critical: their update
  # is lam * sign(w) alone; the bias (unranked) takes plain SGD.
  moved = params["w"] - namespace["params"]["w"]
  assert int(jnp.sum(jnp.abs(moved) > 1e-4)) == int(0.8 * 12)
  assert jnp.allclose(namespace["params"]["b"], -0.01)


def test_the_library_page_runs_top_to_bottom():
  namespace = {}
  for block in _python_blocks(os.path.join(REPO, "docs", "library.md")):
    exec(block, namespace)  # pylint: disable=exec-used
  assert jnp.isfinite(namespace["loss"])
  state = namespace["state"]
  ranked = int(optax.tree_utils.tree_get(state, "num_ranked"))
  assert ranked == 784 * 256 + 256 * 10  # the two kernels, not the biases
  assert int(optax.tree_utils.tree_get(state, "num_critical")) == int(0.6 * ranked)
