"""The one exception type the CLI and notebooks show to a user as a plain message."""


class LabError(Exception):
    """A problem the user can act on: bad input, missing binary, not root, ..."""
