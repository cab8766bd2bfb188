"""First-use installation (NeonatalLungSegSlicerLib.environment.dependencies) with Slicer's installers recorded, not run:
the user is asked first, torch comes from PyTorchUtils, the rest through pip_ensure with torch pinned, and
an installed torch is never replaced."""

from __future__ import annotations

import sys
import types

import pytest

import slicer_harness

slicer = slicer_harness.slicer


@pytest.fixture
def deps(monkeypatch):
    slicer_harness.mrml_environment()
    from NeonatalLungSegLib.models import requirements
    from NeonatalLungSegSlicerLib.environment import dependencies

    state = {"torch": None, "smp": None, "calls": []}

    def fake_unsatisfied():
        torch = [requirements.Requirement("torch", "2.2", state["torch"]),
                 requirements.Requirement("torchvision", "0.17", state["torch"] and "0.30.0")]
        other = [requirements.Requirement("segmentation-models-pytorch", "0.5", state["smp"])]
        return [r for r in torch if not r.satisfied], [r for r in other if not r.satisfied]

    def fake_installed(name):
        return {"torch": state["torch"], "torchvision": state["torch"] and "0.30.0"}.get(name)

    monkeypatch.setattr(requirements, "unsatisfied", fake_unsatisfied)
    monkeypatch.setattr(requirements, "installed_version", fake_installed)

    class PyTorchUtilsLogic:
        def installTorch(self, **kwargs):
            state["calls"].append(("installTorch", kwargs))
            state["torch"] = "2.15.0"
            return object()

    # slicer.packaging as Slicer >= 5.12 has it: pip_ensure skips installing in testing mode unless told not to.
    packaging = types.ModuleType("slicer.packaging")

    def pip_ensure(reqs, constraints=None, skip_packages=None, prompt_install=True, prompt_restart=True,
                   requester=None, skip_in_testing=True, show_progress=True):
        if skip_in_testing and slicer.app.testingEnabled():
            return None  # what the real one does: nothing installed, no error
        state["calls"].append(("pip_ensure", [str(r) for r in reqs], open(constraints).read(), prompt_install))
        state["smp"] = "0.6.0"

    packaging.pip_ensure = pip_ensure
    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    monkeypatch.setattr(slicer, "packaging", packaging, raising=False)
    monkeypatch.delitem(sys.modules, "slicer.pydeps", raising=False)  # does not exist in any Slicer
    return dependencies, state


def test_nothing_missing_asks_nothing(deps):
    dependencies, state = deps
    state["torch"], state["smp"] = "2.15.0", "0.6.0"
    assert dependencies.ensureDependencies(lambda text: pytest.fail("asked without need"))
    assert state["calls"] == []


def test_user_declines_nothing_installed(deps):
    dependencies, state = deps
    asked = []
    assert not dependencies.ensureDependencies(lambda text: asked.append(text) or False)
    assert "torch>=2.2 (not installed)" in asked[0] and "segmentation-models-pytorch>=0.5" in asked[0]
    assert state["calls"] == []


def test_installs_torch_through_pytorchutils_then_the_rest_with_torch_pinned(deps):
    dependencies, state = deps
    assert dependencies.ensureDependencies(lambda text: True)
    (name, kwargs), (ensure, reqs, constraints, prompt) = state["calls"]
    assert name == "installTorch" and kwargs["torchVersionRequirement"] == ">=2.2"
    assert kwargs["torchvisionVersionRequirement"] == ">=0.17" and kwargs["askConfirmation"] is False
    assert ensure == "pip_ensure" and reqs == ["segmentation-models-pytorch>=0.5"] and prompt is False
    assert dependencies.lastInstallMethod == "slicer.packaging.pip_ensure"  # which path ran is said
    assert "torch==2.15.0" in constraints and "torchvision==0.30.0" in constraints


def test_an_old_torch_is_reported_not_replaced(deps):
    dependencies, state = deps
    state["torch"], state["smp"] = "2.0.1", "0.6.0"
    with pytest.raises(dependencies.DependencyError, match="PyTorch Utils"):
        dependencies.ensureDependencies(lambda text: True)
    assert state["calls"] == []


def _record_pip_install(state, monkeypatch) -> list:
    """slicer.util.pip_install replaced by one that records its command and 'installs' smp."""
    commands = []

    def pip_install(command):
        commands.append(command)
        state["smp"] = "0.6.0"

    monkeypatch.setattr(slicer.util, "pip_install", pip_install)
    return commands


def test_without_pip_ensure_falls_back_to_pip_install(deps, monkeypatch):
    dependencies, state = deps
    state["torch"] = "2.15.0"
    monkeypatch.setattr(dependencies, "_pipEnsureModule", lambda: None)
    commands = _record_pip_install(state, monkeypatch)
    assert dependencies.ensureDependencies(lambda text: True)
    assert commands[0].startswith('"segmentation-models-pytorch>=0.5" -c ')
    assert dependencies.lastInstallMethod == "slicer.util.pip_install"


def test_slicer_without_packaging_module_uses_pip_install(deps, monkeypatch):
    """Slicer 5.10 has no slicer.packaging (and no Slicer has slicer.pydeps): pip_install runs."""
    dependencies, state = deps
    state["torch"] = "2.15.0"
    monkeypatch.delitem(sys.modules, "slicer.packaging")
    monkeypatch.delattr(slicer, "packaging")
    import builtins

    real_import = builtins.__import__

    def no_packaging(name, *args, **kwargs):
        if name in ("slicer.packaging", "slicer.pydeps"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_packaging)
    commands = _record_pip_install(state, monkeypatch)
    assert dependencies.ensureDependencies(lambda text: True)
    assert commands and dependencies.lastInstallMethod == "slicer.util.pip_install"


def test_device_line_and_gpu_choice_without_a_gpu(monkeypatch):
    """No GPU here: 'GPU' is refused with a clear message; the panel line says so once torch is loaded."""
    import torch

    slicer_harness.mrml_environment()
    from NeonatalLungSegSlicerLib import pipeline

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    from NeonatalLungSegLib.errors import DeviceError
    from NeonatalLungSegLib.worker.server import engine_device

    with pytest.raises(DeviceError, match="No GPU is available"):
        engine_device("gpu")  # resolved in the worker process, which has torch
    assert pipeline.engineDevice("GPU") == "gpu"  # the Slicer process never imports torch to decide
    assert pipeline.engineDevice("CPU") == "cpu" and pipeline.engineDevice("auto") == "auto"
    assert "No GPU is available" in pipeline.deviceMessage("GPU")
    assert pipeline.deviceMessage("auto") == "No GPU found: runs on the CPU."
    monkeypatch.delitem(sys.modules, "torch")
    assert "checked when you click Segment" in pipeline.deviceMessage("auto")
