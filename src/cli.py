"""What the three commands (src.run, src.eval, src.predict) share at their boundary with the user."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from src.data import DataError
from src.model import ConfigError

# Errors that are the user's to fix: printed as one line, never as a traceback.
USER_ERRORS = (ConfigError, DataError)
EXIT_USER_ERROR = 2


@contextmanager
def user_errors_as_one_line():
    """Turn a ConfigError/DataError into `error: ...` on stderr and exit status 2."""
    try:
        yield
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
