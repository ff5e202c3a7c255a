"""The project's user-error types: problems with a config, a path or data files.

The command lines report these as one line (`error: ...`) and exit; any other
exception is a bug and keeps its traceback.
"""


class UserError(ValueError):
  """A configuration, path or data problem the user can fix."""


class MissingDataError(UserError, FileNotFoundError):
  """Data files or a directory that should exist do not."""
