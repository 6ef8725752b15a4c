"""The one exception type the CLI and notebooks show to a user as a plain message,
and what a command does when its reader has gone (`... | head`)."""
import os
import sys


class LabError(Exception):
    """A problem the user can act on: bad input, missing binary, not root, ...

    ``field`` names the input the error is about when there is one (``"network"``,
    ``"nodes"``, ``"underlay"``: the LabSpec field, which is also the form field of a
    UI), so a UI can put the message next to that field without reading the text.
    ``str(err)`` is the message alone.
    """

    def __init__(self, msg: str = "", field: str | None = None) -> None:
        super().__init__(msg)
        self.field = field


BROKEN_PIPE_EXIT = 141  # what a shell reports for a command killed by SIGPIPE


def quiet_stdout() -> None:
    """Point standard output at /dev/null after a BrokenPipeError, so that nothing more is
    written into the closed pipe (not even by the interpreter's last flush)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def internal_error(command: str, e: BaseException) -> str:
    """The one line a command prints for a bug (not bad input); LABKIT_DEBUG=1 re-raises instead."""
    return f"{command}: internal error: {type(e).__name__}: {e} (LABKIT_DEBUG=1 shows the traceback)"
