"""The shape of the code, as docs/architecture.md draws it: packages by concern, imports that point one way, no
import cycles, and folders small enough to read. Static (AST) checks: nothing is imported or run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"NeonatalLungSegLib": REPO / "NeonatalLungSeg" / "NeonatalLungSegLib",
         "neonatal_lung_training": REPO / "Training" / "neonatal_lung_training"}

# What each library package may import from the library (besides itself). The ground floor (errors,
# geometry, __init__) is open to everyone. docs/architecture.md shows the same layers.
LIB_LAYERS = {
    "volumes": set(),
    "models": set(),
    "inference": {"volumes", "models"},
    "correction": {"volumes", "models", "inference"},
    "dataset": {"volumes", "models", "inference"},
    "measurements": {"volumes", "models", "inference"},
    "worker": {"volumes", "models", "inference", "correction"},
    "cli": {"volumes", "models", "inference", "correction", "dataset", "measurements"},
}
# The same for Training's packages; the engine (NeonatalLungSegLib) is open to all of them.
TRAINING_LAYERS = {
    "synthesis": set(),
    "evaluation": {"synthesis"},
    "training": {"synthesis", "evaluation"},
    "release": {"synthesis", "evaluation", "training"},
    "datasets": {"synthesis", "evaluation", "training"},
    "interactive": {"synthesis", "evaluation", "training"},
    "improve": {"synthesis", "evaluation", "training", "release", "datasets"},
    "loop": {"synthesis", "evaluation", "training", "release", "datasets", "interactive", "improve"},
}
MAX_MODULES_PER_FOLDER = 12


def module_name(root: str, path: Path) -> str:
    parts = [root, *path.relative_to(ROOTS[root]).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(root: str, path: Path) -> set[str]:
    """Library modules this file imports, lazy imports in functions and type-only imports included (a
    type-only import back up the layers is still a dependency the reader must follow)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(root, path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for alias in node.names:  # "from pkg import module" names a module; "from module import x" does not
                found.add(f"{target}.{alias.name}")
            found.add(target)
    return found


def library_graph() -> dict[str, set[str]]:
    files = {module_name(root, p): (root, p) for root, folder in ROOTS.items() for p in folder.rglob("*.py")
             if "__pycache__" not in p.parts}
    graph = {}
    for name, (root, path) in files.items():
        graph[name] = {m for m in imports_of(root, path) if m in files and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    # Packages import their own __init__ implicitly; a cycle through an __init__ that imports nothing is no cycle.
    assert cycles(library_graph()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_library_packages_import_only_their_lower_layers() -> None:
    wrong = []
    for name, imports in library_graph().items():
        parts = name.split(".")
        if parts[0] != "NeonatalLungSegLib" or len(parts) < 3:
            continue
        own = parts[1]
        for target in imports:
            tparts = target.split(".")
            if tparts[0] != "NeonatalLungSegLib":
                wrong.append(f"{name} imports {target} (the engine never imports Training)")
            elif len(tparts) > 2 and tparts[1] != own and tparts[1] not in LIB_LAYERS[own]:
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_training_packages_import_only_their_lower_layers() -> None:
    wrong = []
    for name, imports in library_graph().items():
        parts = name.split(".")
        if parts[0] != "neonatal_lung_training" or len(parts) < 3:
            continue
        for target in imports:
            tparts = target.split(".")
            if tparts[0] == "neonatal_lung_training" and len(tparts) > 2 and tparts[1] != parts[1] \
                    and tparts[1] not in TRAINING_LAYERS[parts[1]]:
                wrong.append(f"{name} imports {target}")
    assert wrong == []


@pytest.mark.parametrize("root", sorted(ROOTS))
def test_folders_stay_small(root: str) -> None:
    for folder in [ROOTS[root], *(p for p in ROOTS[root].rglob("*") if p.is_dir() and p.name != "__pycache__")]:
        modules = [p for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
        assert len(modules) <= MAX_MODULES_PER_FOLDER, f"{folder}: {len(modules)} modules"


@pytest.mark.parametrize("root", sorted(ROOTS))
def test_every_package_says_what_it_owns(root: str) -> None:
    for init in ROOTS[root].rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 80, f"{init} has no docstring saying what the package owns"


# Every tracked file above 1 MB, by path: exactly one version of each bundled model and the sample. A candidate's
# or experiment's weights committed anywhere else would grow every clone for ever (docs/architecture.md).
LARGE_FILES = {"Resources/Models/neonatal-lung-unet-r50/model.safetensors",
               "Resources/Models/neonatal-lung-unet-r50/network-int8.onnx",
               "Resources/Models/neonatal-lung-refine-r50/model.safetensors",
               "Resources/Sample/sample-neonatal-chest.nii.gz"}


def test_only_the_bundled_models_and_the_sample_are_large_files() -> None:
    import subprocess

    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True).stdout
    large = {name for name in tracked.decode().split("\0")
             if name and (REPO / name).is_file() and (REPO / name).stat().st_size > 1_000_000}
    assert large == LARGE_FILES


def test_the_slicer_side_folders_stay_small_too() -> None:
    slicer_lib = REPO / "NeonatalLungSeg" / "NeonatalLungSegSlicerLib"
    for folder in [slicer_lib, *(p for p in slicer_lib.rglob("*") if p.is_dir() and p.name != "__pycache__")]:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= MAX_MODULES_PER_FOLDER, f"{folder}: {len(modules)} modules"
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
        assert doc and len(doc) > 80, f"{folder}/__init__.py has no docstring saying what the package owns"
