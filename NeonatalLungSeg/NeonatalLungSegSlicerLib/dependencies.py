"""Install the engine's Python dependencies into Slicer on first use, after the user agrees.

Never at import: a module that pip-installs while Slicer starts blocks the application and can break other
extensions. PyTorch comes through the PyTorch extension (PyTorchUtils picks the build that fits the GPU
driver and installs torch with a matching torchvision); the rest through ``slicer.pydeps.pip_ensure``
(Slicer >= 5.11; older builds named the module ``slicer.packaging``) or else ``slicer.util.pip_install``.
torch is never downgraded: a torch that is present and new enough is pinned by a constraints file while
the rest installs, and one that is too old is reported, not replaced behind the user's back.
"""

import os
import tempfile

import slicer

from NeonatalLungSegLib import requirements


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


def ensureDependencies(confirm):
    """True when everything is importable; installs after ``confirm(text)`` returns True, else False."""
    torchMissing, otherMissing = missingDependencies()
    if not torchMissing and not otherMissing:
        return True
    if not confirm(describeMissing(torchMissing, otherMissing)):
        return False
    if torchMissing:
        _installTorch(torchMissing)
    if otherMissing:
        _installOthers(otherMissing)
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
    constraints = _torchConstraints()
    try:
        pydeps = _pipEnsureModule()
        if pydeps is not None:
            from packaging.requirements import Requirement

            pydeps.pip_ensure([Requirement(r.specifier) for r in otherMissing], constraints=constraints,
                              prompt_install=False, requester="NeonatalLungSeg")
        else:
            slicer.util.pip_install(" ".join(f'"{r.specifier}"' for r in otherMissing) + f' -c "{constraints}"')
    finally:
        os.remove(constraints)


def _pipEnsureModule():
    """The Slicer module offering ``pip_ensure``, or None on Slicer builds without it."""
    for name in ("slicer.pydeps", "slicer.packaging"):
        try:
            module = __import__(name, fromlist=["pip_ensure"])
        except ImportError:
            continue
        if hasattr(module, "pip_ensure"):
            return module
    return None
