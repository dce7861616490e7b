"""The command line's one error handler: every `triage` command reports bad input the same way.

Reason to change: how a command-line failure is shown (one line on stderr, exit 2; Ctrl-C:
exit 130 with how to resume). The commands themselves live beside what they run
(`grid`, `report`, `failure`, `explorer`, `__main__`).
"""
from __future__ import annotations

import sys
from typing import Callable


def guarded(body: Callable[[], int | None], interrupted: str, errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run one command's ``body``; return its exit code.

    A ``ConfigError`` or ``DataError`` (and any of ``errors``) becomes one line
    ``triage: error: ...`` on stderr and exit code 2, never a traceback: they mean bad input
    or missing data, which the user fixes. Ctrl-C prints ``interrupted`` (how to resume) and
    returns 130. Any other exception is a bug and propagates with its traceback.

    Args:
        body: the command; returns its exit code (None: 0).
        interrupted: what to tell the user after Ctrl-C, e.g. "rerun the same command to resume".
        errors: further exception types that mean bad input for this command.
    """
    from .data import DataError
    from .experiments import ConfigError
    try:
        rc = body()
    except (ConfigError, DataError, *errors) as e:
        print(f"triage: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"triage: interrupted; {interrupted}", file=sys.stderr)
        return 130
    return 0 if rc is None else rc
