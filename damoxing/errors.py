"""User-facing errors: the CLI prints their message, never a traceback."""


class UserError(Exception):
    """Bad input from the user (a file, a config, a request). The message says what and where."""


class ConfigError(UserError, ValueError):
    """A config key or value is wrong; the message names the key and what is allowed."""


class CheckpointError(UserError):
    """A checkpoint folder or file cannot be read or written; the message names the file."""


class DataError(UserError):
    """A data file cannot be read; the message names the file and line."""
