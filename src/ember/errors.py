"""Errors that name what is wrong. The CLI prints them as one line and exits with code 2."""


class EmberError(Exception):
    """Base of ember's user-facing errors: the message alone tells the user what to fix."""


class ModelFileError(EmberError, ValueError):
    """A model file is unreadable, unsafe or from an incompatible ember."""


class DatasetError(EmberError, OSError):
    """A dataset is missing, corrupt or could not be downloaded."""
