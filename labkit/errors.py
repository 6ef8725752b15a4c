"""The one exception type the CLI and notebooks show to a user as a plain message."""


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
