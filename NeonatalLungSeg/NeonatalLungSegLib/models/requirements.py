"""What the engine needs installed, and what is missing or too old here.

The Slicer module installs these on first use (never at import, and only after the user agrees), and must
never downgrade a package another extension relies on, torch above all. Deciding *what* is missing is plain
Python, kept here so it is tested without Slicer; *how* to install is the module's business. The bounds
mirror ``[project].dependencies`` in pyproject.toml (a test keeps the two in step).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata

# Distribution name -> minimum version. torch and torchvision must come as a matched pair (PyTorch
# extension's installer in Slicer), so they are listed apart from the rest.
TORCH_REQUIREMENTS = {"torch": "2.2", "torchvision": "0.17"}
OTHER_REQUIREMENTS = {
    "numpy": "1.24",
    "scipy": "1.10",
    "SimpleITK": "2.3",
    "segmentation-models-pytorch": "0.5",
    "safetensors": "0.4",
    "openvino": "2024.0",  # the model folder's int8 network on CPUs with VNNI (int8_network.py)
    "threadpoolctl": "3.1",  # one BLAS thread beside OpenVINO's (array_inference.py)
}


@dataclass(frozen=True)
class Requirement:
    name: str
    minimum: str
    installed: str | None  # None: not installed

    @property
    def satisfied(self) -> bool:
        return self.installed is not None and version_tuple(self.installed) >= version_tuple(self.minimum)

    @property
    def specifier(self) -> str:
        return f"{self.name}>={self.minimum}"

    def describe(self) -> str:
        state = "not installed" if self.installed is None else f"{self.installed} installed"
        return f"{self.specifier} ({state})"


def version_tuple(version: str) -> tuple[int, ...]:
    """Leading numeric release parts: '2.15.0+cu132' -> (2, 15, 0); '0.6.0rc1' -> (0, 6, 0)."""
    parts = []
    for piece in version.split("+")[0].split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check(requirements: dict[str, str]) -> list[Requirement]:
    return [Requirement(name, minimum, installed_version(name)) for name, minimum in requirements.items()]


def unsatisfied() -> tuple[list[Requirement], list[Requirement]]:
    """(torch pair, others) that are missing or older than needed."""
    return ([r for r in check(TORCH_REQUIREMENTS) if not r.satisfied],
            [r for r in check(OTHER_REQUIREMENTS) if not r.satisfied])
