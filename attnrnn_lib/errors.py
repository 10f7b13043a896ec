"""The one exception type that command-line tools turn into a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: a flag, a file or a directory that cannot be used.

    The message must name the flag or file and say what is wrong, in one line.
    """
