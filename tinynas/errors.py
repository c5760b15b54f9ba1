"""The one exception type for mistakes in what a user hands us.

A ``UserError`` is reported by the CLI as a single line and exit code 2; any other
exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from a user: a file, a field, a value. The message names all three."""

    def __init__(self, source: str, field: str, reason: str):
        self.source = source
        self.field = field
        # One line, whatever a parser or the OS put in its own message.
        self.reason = reason = " ".join(str(reason).split())
        where = ": ".join(part for part in (source, field) if part)
        super().__init__(f"{where}: {reason}" if where else reason)
