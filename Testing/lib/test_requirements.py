"""NeonatalLungSegLib.models.requirements: what the Slicer module would install, decided without Slicer."""

from __future__ import annotations

from NeonatalLungSegLib.models import requirements
from NeonatalLungSegLib.models.requirements import Requirement, version_tuple


def test_versions_compare_by_release_numbers():
    assert version_tuple("2.15.0+cu132") == (2, 15, 0)
    assert version_tuple("0.6.0rc1") == (0, 6, 0)
    assert Requirement("torch", "2.2", "2.15.0+cpu").satisfied
    assert not Requirement("torch", "2.2", "2.1.9").satisfied
    assert not Requirement("safetensors", "0.4", None).satisfied
    assert Requirement("x", "1.0", None).describe() == "x>=1.0 (not installed)"


def test_this_environment_satisfies_everything():
    torch_missing, other_missing = requirements.unsatisfied()
    assert torch_missing == [] and other_missing == []
