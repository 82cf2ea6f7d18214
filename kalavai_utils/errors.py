"""The one exception type for bad input; the CLI turns it into a one-line error and exit 2."""


class KalavaiError(Exception):
    """A problem the user can fix (bad scale, missing file, refused submission...)."""
