"""Exceptions the CLI and the Slicer module turn into one clear line for the user.

Every error a user can cause derives from ``NeonatalLungSegError``; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class NeonatalLungSegError(Exception):
    """A problem with the user's input, model or environment, explained in the message."""


class InputError(NeonatalLungSegError):
    """An input volume cannot be segmented (missing, unreadable, wrong dimension, bad values)."""


class ModelFolderError(NeonatalLungSegError):
    """A model folder is missing a file, has a corrupt or altered file, or an invalid config."""


class DeviceError(NeonatalLungSegError):
    """The requested compute device does not exist or is not available on this machine."""


class OutputExistsError(NeonatalLungSegError):
    """An output file is already there and overwriting was not asked for."""


class Cancelled(NeonatalLungSegError):
    """The caller asked to stop; nothing was written."""
