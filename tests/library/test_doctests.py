"""The Examples in the public docstrings run and print what they claim."""

import doctest

import pytest

from optax_cdr import _cdr, _selection


@pytest.mark.parametrize("module", [_cdr, _selection])
def test_docstring_examples(module):
  result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
