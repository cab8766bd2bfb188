"""The extension's packaging: CMake lists every script and resource, the .ui has every widget the code uses,
the icon is a real picture, the dependency bounds agree with pyproject.toml. No Slicer needed."""

from __future__ import annotations

import ast
import re
import struct
import tomllib
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "NeonatalLungSeg"
UI = MODULE / "Resources" / "UI" / "NeonatalLungSeg.ui"
CODE = [MODULE / "NeonatalLungSeg.py", *sorted((MODULE / "NeonatalLungSegSlicerLib").rglob("*.py"))]


def cmake_list(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} not set"
    return [line.strip().replace("${MODULE_NAME}", "NeonatalLungSeg") for line in match.group(1).splitlines()
            if line.strip() and not line.strip().startswith("#")]


def ui_widgets() -> dict[str, ElementTree.Element]:
    return {w.get("name"): w for w in ElementTree.parse(UI).getroot().iter("widget")}


def test_cmake_lists_every_script_and_resource() -> None:
    text = (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")
    scripts = cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    on_disk = sorted(str(p.relative_to(MODULE)) for p in MODULE.rglob("*.py") if "__pycache__" not in p.parts)
    assert sorted(scripts) == on_disk
    resources = cmake_list(text, "MODULE_PYTHON_RESOURCES")
    resource_files = sorted(str(p.relative_to(MODULE)) for p in (MODULE / "Resources").rglob("*") if p.is_file())
    assert sorted(resources) == resource_files
    data = cmake_list(text, "MODULE_DATA_FILES")
    for name in data:
        assert (REPO / "Resources" / name).is_file(), name
    model = REPO / "Resources" / "Models" / "neonatal-lung-unet-r50"
    for required in ("model.json", "model.safetensors"):
        assert f"Models/neonatal-lung-unet-r50/{required}" in data and (model / required).is_file()
    assert "Sample/sample-neonatal-chest.nii.gz" in data
    assert "WITH_GENERIC_TESTS" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_top_level_cmake_has_extension_metadata() -> None:
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert re.search(rf'set\({key} "[^"]+"\)', text), key
    assert re.search(r'set\(EXTENSION_DEPENDS "PyTorch"\)', text)
    assert "add_subdirectory(NeonatalLungSeg)" in text and "find_package(Slicer REQUIRED)" in text
    screenshot = re.search(r'set\(EXTENSION_SCREENSHOTURLS "[^"]*/main/([^"]+)"\)', text).group(1)
    icon = re.search(r'set\(EXTENSION_ICONURL "[^"]*/main/([^"]+)"\)', text).group(1)
    assert (REPO / screenshot).is_file() and (REPO / icon).is_file()


def test_every_widget_the_code_uses_exists_in_the_ui() -> None:
    widgets = ui_widgets()
    used = set()
    for path in CODE:
        used |= set(re.findall(r"\bui\.(\w+)", path.read_text(encoding="utf-8")))
    assert used, "no self.ui.<name> found: the pattern is out of date"
    missing = sorted(used - set(widgets))
    assert not missing, f"widgets used in code but absent from the .ui: {missing}"


def test_every_slicer_parameter_name_is_a_parameter_node_field() -> None:
    tree = ast.parse((MODULE / "NeonatalLungSegSlicerLib" / "parameters.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "NeonatalLungSegParameterNode")
    fields = {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}
    bound = {}
    for name, widget in ui_widgets().items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.findtext("string")] = name
    assert set(bound) <= fields
    # Every choice the user makes has a widget; the outputs are shown by their own widgets or set by Logic.
    # The three folders are bound by pathFields.PathFieldBinding (an empty field must not become ".").
    assert fields - set(bound) == {"volumeTable", "probabilityVolume", "modelFolder", "trainingFolder",
                                   "refineModelFolder"}
    code = (MODULE / "NeonatalLungSeg.py").read_text(encoding="utf-8")
    for widget, name in (("modelFolderPathLineEdit", "modelFolder"), ("trainingFolderPathLineEdit", "trainingFolder"),
                         ("refineModelFolderPathLineEdit", "refineModelFolder")):
        assert f'PathFieldBinding(self.ui.{widget}, "{name}")' in code


def test_ui_is_a_designer_file_with_scene_connections_and_the_segment_editor() -> None:
    root = ElementTree.parse(UI).getroot()
    widgets = ui_widgets()
    assert root.find("widget").get("class") == "qMRMLWidget"
    assert widgets["segmentEditorWidget"].get("class") == "qMRMLSegmentEditorWidget"
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml = {n for n, w in widgets.items() if w.get("class", "").startswith("qMRML") and n != "NeonatalLungSeg"}
    assert receivers == mrml
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    assert {w.get("class") for w in widgets.values() if not w.get("class").startswith("Q")} <= declared


def test_icon_is_a_real_128px_png() -> None:
    data = (MODULE / "Resources" / "Icons" / "NeonatalLungSeg.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (128, 128)
    assert len(data) > 5000  # a picture, not a flat square


def test_files_stay_short() -> None:
    lib = sorted((MODULE / "NeonatalLungSegLib").rglob("*.py"))
    for path in [*CODE, *lib]:
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 400, path


def test_dependency_bounds_match_pyproject() -> None:
    import sys

    sys.path.insert(0, str(MODULE))
    from NeonatalLungSegLib.models import requirements

    declared = {}
    for spec in tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]:
        name, minimum = re.match(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", spec).groups()
        declared[name.lower()] = minimum
    ours = {k.lower(): v for k, v in {**requirements.TORCH_REQUIREMENTS, **requirements.OTHER_REQUIREMENTS}.items()}
    assert {k: v for k, v in declared.items() if k in ours} == ours
    assert set(ours) <= set(declared)


def test_slicer_code_never_imports_torch_or_the_engine_at_import_time() -> None:
    """First use installs dependencies; importing the module (Slicer start-up) must not need them."""
    heavy = {"torch", "torchvision", "segmentation_models_pytorch", "NeonatalLungSegLib.inference.engine"}
    for path in CODE:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only; imports inside functions are the lazy ones
            if isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {node.module or ""}
            else:
                continue
            assert not names & heavy, f"{path.name} imports {names & heavy} at module level"
