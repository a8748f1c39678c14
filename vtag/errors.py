"""The one exception type the CLI turns into a clean one-line message instead of a traceback."""


class VtagError(Exception):
    """A problem the user can fix: bad input, a missing file, a bad option. The message is one line
    that names the file (and record, where there is one) and, where possible, the fix."""
