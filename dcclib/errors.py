"""The one exception type for bad input: the CLI prints it as one line and exits with code 2."""


class UserError(Exception):
    """Bad input from a user (unknown name, missing file, impossible setting).

    The message is a complete one-line sentence that says what is wrong and how to fix it.
    """
