"""Errors whose message is meant for the user: the CLI prints them without a traceback."""


class JukeboxError(Exception):
    """A problem with the user's input or environment; str(e) says what and where."""
