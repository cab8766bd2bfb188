"""Exceptions the CLI and the Slicer module turn into one clear line for the user.

Every error a user can cause derives from ``NeonatalLungSegError``; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


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


class OutputError(NeonatalLungSegError):
    """An output cannot be written (unwritable or full disk, a file where a folder should be, an input of the
    same run, or a written file that does not read back as written)."""


class Cancelled(NeonatalLungSegError):
    """The caller asked to stop; nothing was written."""


def exit_status(run: Callable[[], object], *, also: tuple[type[Exception], ...] = (),
                interrupted: str = "interrupted: nothing partial was written") -> int:
    """Run a command body; a user error becomes one ``error:`` line and status 2, Ctrl-C status 130.

    Every subcommand goes through here, also when started on its own (``python -m``, torchrun), so all of
    them answer bad input the same way. ``also`` names further exception types that mean bad input there.
    """
    try:
        status = run()
    except (NeonatalLungSegError, *also) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment (disk full, permission, a file in the way), never a traceback
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    return status if isinstance(status, int) else 0  # a body may return its result instead of a status
