"""Install the engine's Python dependencies into Slicer on first use, after the user agrees.

Never at import: a module that pip-installs while Slicer starts blocks the application and can break other
extensions. PyTorch comes through the PyTorch extension (PyTorchUtils picks the build that fits the GPU
driver and installs torch with a matching torchvision); the rest through ``slicer.packaging.pip_ensure``
(Slicer >= 5.12; ``slicer.pydeps`` does not exist in any release) or else ``slicer.util.pip_install``.
``pip_ensure`` skips installing in testing mode by default, which would leave the packages missing after
the user agreed, so it is called with ``skip_in_testing=False`` (the self-test itself never installs: it
skips where packages are missing). ``lastInstallMethod`` and the log say which path ran.
torch is never downgraded: a torch that is present and new enough is pinned by a constraints file while
the rest installs, and one that is too old is reported, not replaced behind the user's back.
"""

import logging
import os
import tempfile

import slicer

from NeonatalLungSegLib.models import requirements


lastInstallMethod = None  # "slicer.packaging.pip_ensure" or "slicer.util.pip_install" once something installed


class DependencyError(RuntimeError):
    """The dependencies cannot be installed here; the message says what the user can do."""


def missingDependencies():
    """(torch pair, other) requirements that are missing or too old, as ``requirements.Requirement``."""
    return requirements.unsatisfied()


def describeMissing(torchMissing, otherMissing):
    lines = [r.describe() for r in (*torchMissing, *otherMissing)]
    return ("Neonatal Lung Segmentation needs these Python packages, which will be downloaded and installed "
            "into Slicer (this can take several minutes and a few GB):\n\n  " + "\n  ".join(lines)
            + "\n\nInstall them now?")


def ensureDependencies(confirm, busy=None):
    """True when everything is importable; installs after ``confirm(text)`` returns True, else False.

    ``busy(True)`` is called before installing and ``busy(False)`` after (also on failure), so the caller
    can disable Segment: pip's output pumps the event loop and a second click would arrive mid-install.
    """
    global lastInstallMethod
    torchMissing, otherMissing = missingDependencies()
    if not torchMissing and not otherMissing:
        return True
    if not confirm(describeMissing(torchMissing, otherMissing)):
        return False
    if busy is not None:
        busy(True)
    try:
        if torchMissing:
            _installTorch(torchMissing)
        if otherMissing:
            lastInstallMethod = _installOthers(otherMissing)
            logging.info(f"NeonatalLungSeg: installed {', '.join(r.specifier for r in otherMissing)} "
                         f"with {lastInstallMethod}")
    finally:
        if busy is not None:
            busy(False)
    torchMissing, otherMissing = missingDependencies()
    if torchMissing or otherMissing:
        raise DependencyError("still missing after installation: "
                              + ", ".join(r.describe() for r in (*torchMissing, *otherMissing))
                              + ". Restart Slicer and try again.")
    return True


def _installTorch(torchMissing):
    installedTorch = requirements.installed_version("torch")
    if installedTorch is not None:
        # Present but too old (or torchvision missing next to it): replacing torch could break other
        # extensions, so the user does it knowingly in the PyTorch Utils module.
        raise DependencyError(
            f"PyTorch {installedTorch} is installed but this module needs "
            + ", ".join(r.specifier for r in torchMissing)
            + ". Update PyTorch in the 'PyTorch Utils' module (PyTorch extension), then restart Slicer.")
    try:
        import PyTorchUtils
    except ImportError:
        raise DependencyError("the PyTorch extension is required: install 'PyTorch' from the Extensions Manager, "
                              "restart Slicer and try again") from None
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    minimum = requirements.TORCH_REQUIREMENTS
    torch = torchLogic.installTorch(askConfirmation=False,
                                    torchVersionRequirement=f">={minimum['torch']}",
                                    torchvisionVersionRequirement=f">={minimum['torchvision']}")
    if torch is None:
        raise DependencyError("PyTorch was not installed; see the PyTorch Utils module")


def _torchConstraints():
    """A pip constraints file pinning the installed torch/torchvision, so nothing here changes them."""
    pins = [f"{name}=={requirements.installed_version(name)}" for name in requirements.TORCH_REQUIREMENTS
            if requirements.installed_version(name)]
    handle, path = tempfile.mkstemp(prefix="NeonatalLungSeg-constraints-", suffix=".txt")
    with os.fdopen(handle, "w") as constraints:
        constraints.write("\n".join(pins) + "\n")
    return path


def _installOthers(otherMissing):
    """Install with Slicer's pip_ensure where it exists, else pip_install; returns which of them ran."""
    constraints = _torchConstraints()
    try:
        packaging = _pipEnsureModule()
        if packaging is not None:
            from packaging.requirements import Requirement

            packaging.pip_ensure([Requirement(r.specifier) for r in otherMissing], constraints=constraints,
                                 prompt_install=False, requester="NeonatalLungSeg", skip_in_testing=False)
            return "slicer.packaging.pip_ensure"
        slicer.util.pip_install(" ".join(f'"{r.specifier}"' for r in otherMissing) + f' -c "{constraints}"')
        return "slicer.util.pip_install"
    finally:
        os.remove(constraints)


def _pipEnsureModule():
    """``slicer.packaging`` when it offers ``pip_ensure`` (Slicer >= 5.12), else None."""
    try:
        module = __import__("slicer.packaging", fromlist=["pip_ensure"])
    except ImportError:
        return None
    return module if hasattr(module, "pip_ensure") else None
