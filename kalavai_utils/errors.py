"""The one exception type for bad input; the CLI turns it into a one-line error and exit 2."""


class KalavaiError(Exception):
    """A problem the user can fix (bad scale, missing file, refused submission...)."""


def first_line(e: BaseException) -> str:
    """An exception's first line of message (its type name when it has none): for a one-line error."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
