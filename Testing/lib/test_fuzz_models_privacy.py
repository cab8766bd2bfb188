"""Fuzz suite, second round (issue 30): every model file checked on every path, label names that agree with the
voxels, bounded in-plane sizes, one line instead of a traceback for odd model folders, and a training folder
that keeps identifiers out by what the values look like, not only by their keys."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fuzz_helpers import labelled_pair
from fuzz_helpers import assert_one_error_line, run, write_volume
from NeonatalLungSegLib.dataset import export
from NeonatalLungSegLib.dataset.training_folder import MANIFEST_NAME, add_case, read_training_folder
from NeonatalLungSegLib.errors import InputError, ModelFolderError
from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.models import registry
from NeonatalLungSegLib.models.model_folder import CONFIG_NAME, WEIGHTS_NAME, read_config, sha256_of

VNNI_CPU = "avx fma avx2 avx512f avx512_vnni avx512_bf16"  # a CPU where ``auto`` takes the int8 network


def edited_folder(tmp_path: Path, model: Path, edit: Any, name: str = "edited") -> Path:
    """A copy of ``model`` whose model.json went through ``edit(data)`` (which changes it in place)."""
    folder = tmp_path / name
    shutil.copytree(model, folder)
    data = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    edit(data)
    (folder / CONFIG_NAME).write_text(json.dumps(data))
    return folder


# 1. Every model file checked on every path: the int8 path checks model.safetensors too ---------------------

@pytest.fixture(scope="module")
def int8_folder(tmp_path_factory: pytest.TempPathFactory, tiny_model_folder: Path) -> Path:
    """The tiny model folder with an int8-path network: its network exported to ONNX (float, which OpenVINO
    runs as it would a quantized file) and a record naming both checksums, as ``quantize`` writes them."""
    pytest.importorskip("openvino")
    import torch

    from NeonatalLungSegLib.models.int8_network import INT8_NAME, INT8_RECORD, RECORD_FORMAT
    from NeonatalLungSegLib.models.network import build_checked

    folder = tmp_path_factory.mktemp("int8") / "model"
    shutil.copytree(tiny_model_folder, folder)
    config = read_config(folder)
    torch.onnx.export(build_checked(folder, config), (torch.zeros(1, 1, 64, 64),), str(folder / INT8_NAME),
                      input_names=["image"], output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={"image": {0: "slices"}, "logits": {0: "slices"}})
    (folder / INT8_RECORD).write_text(json.dumps({
        "format": RECORD_FORMAT, "file": INT8_NAME, "sha256": sha256_of(folder / INT8_NAME),
        "weights_sha256": config.weights_sha256}))
    return folder


def other_weights(tmp_path: Path) -> bytes:
    """A valid safetensors file of the same network with other values: the swap nothing but a checksum sees."""
    import torch

    from conftest import tiny_config
    from NeonatalLungSegLib.models.model_folder import write_model_folder
    from NeonatalLungSegLib.models.network import build_network

    torch.manual_seed(1)
    config = tiny_config()
    write_model_folder(tmp_path / "other", config, build_network(config).state_dict(), dtype="float32")
    return (tmp_path / "other" / WEIGHTS_NAME).read_bytes()


def test_the_int8_test_folder_runs_on_the_int8_path(int8_folder: Path, mock_cpu) -> None:
    mock_cpu(VNNI_CPU)
    assert Segmenter.load(int8_folder, device="cpu").precision == "int8"
    assert Segmenter.load(int8_folder, device="cpu", precision="int8").backend.startswith("openvino")


@pytest.mark.parametrize("damage", ["missing", "truncated", "swapped"])
def test_the_int8_path_checks_the_weights_file(tmp_path: Path, int8_folder: Path, mock_cpu, damage: str,
                                               capsys: pytest.CaptureFixture) -> None:
    mock_cpu(VNNI_CPU)
    folder = tmp_path / "model"
    shutil.copytree(int8_folder, folder)
    weights = folder / WEIGHTS_NAME
    if damage == "missing":
        weights.unlink()
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        weights.write_bytes(other_weights(tmp_path))
    for precision in ("auto", "int8"):
        with pytest.raises(ModelFolderError, match=WEIGHTS_NAME) as caught:
            Segmenter.load(folder, device="cpu", precision=precision)
        assert "\n" not in str(caught.value)
    source = write_volume(tmp_path / "a.nii.gz")
    out = tmp_path / "out"
    code, _, err = run(["segment", source, "-o", out, "--model", folder, "--device", "cpu"], capsys)
    assert_one_error_line(code, err, WEIGHTS_NAME)
    assert not out.exists() or not any(out.iterdir())


# 2. Label names that agree with the voxels ----------------------------------------------------------------

@pytest.mark.parametrize("labels, network_label", [
    ({"right_lung": 2, "left_lung": 1}, "lung"),          # swapped: volumes.json would contradict its voxels
    ({"left_lung": 1, "right_lung": 2}, "lung"),
    ({"lung_r": 1, "lung_l": 2}, "lung"),                 # names no reader (volumes, DICOM SEG, refine) knows
    ({"right_lung": 1, "left_lung": 2, "heart": 3}, "lung"),
    ({"right_lung": 1, "left_lung": 2}, "heart"),         # the unsplit label's name
])
def test_output_labels_must_be_the_ones_the_engine_writes(tmp_path: Path, tiny_model_folder: Path,
                                                          labels: dict, network_label: str,
                                                          capsys: pytest.CaptureFixture) -> None:
    def edit(data: dict) -> None:
        data["output"]["labels"], data["output"]["network_label"] = labels, network_label

    folder = edited_folder(tmp_path, tiny_model_folder, edit)
    with pytest.raises(ModelFolderError, match="output") as caught:
        read_config(folder)
    assert "\n" not in str(caught.value)
    source = write_volume(tmp_path / "a.nii.gz")
    code, _, err = run(["segment", source, "-o", tmp_path / "out", "--model", folder, "--device", "cpu"], capsys)
    assert_one_error_line(code, err, CONFIG_NAME, "output.")


def test_the_only_accepted_labels_are_those_the_engine_writes_and_measures(tiny_model_folder: Path) -> None:
    """One mapping everywhere: the config's, the post-processing's values and the volumes' names."""
    from NeonatalLungSegLib.inference.measure import measure_volumes
    from NeonatalLungSegLib.inference.postprocess import LEFT_LUNG, RIGHT_LUNG
    from NeonatalLungSegLib.models.model_folder import ENGINE_LABELS

    assert ENGINE_LABELS == {"right_lung": RIGHT_LUNG, "left_lung": LEFT_LUNG}
    assert read_config(tiny_model_folder).output.labels == ENGINE_LABELS
    labels = np.zeros((2, 3, 4), np.uint8)
    labels[0, 0, :1], labels[1, :, :] = RIGHT_LUNG, LEFT_LUNG
    volumes = measure_volumes(labels, Geometry(size=(4, 3, 2), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                                               direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)))
    for name, value in ENGINE_LABELS.items():
        assert volumes[name]["label"] == value
        assert volumes[name]["voxels"] == int(np.count_nonzero(labels == value))


# 3. In-plane sizes the engine supports --------------------------------------------------------------------

@pytest.mark.parametrize("size", [[1024, 1024], [64, 1024], [2048, 2048], [544, 512]])
def test_in_plane_size_is_bounded_to_what_the_engine_supports(tmp_path: Path, tiny_model_folder: Path,
                                                              size: list[int]) -> None:
    folder = edited_folder(tmp_path, tiny_model_folder, lambda d: d["input"].__setitem__("in_plane_size", size))
    with pytest.raises(ModelFolderError, match="in_plane_size") as caught:
        read_config(folder)
    assert "512" in str(caught.value) and "\n" not in str(caught.value)


def test_3d_window_depth_is_bounded(tmp_path: Path, tiny_model_folder: Path) -> None:
    """A 3D window is patch_slices x in_plane_size: 1024 x 512 x 512 voxels would not fit any device."""
    folder = edited_folder(tmp_path, tiny_model_folder, lambda d: d["input"].__setitem__("patch_slices", 512))
    with pytest.raises(ModelFolderError, match="patch_slices .*256"):
        read_config(folder)


def test_in_plane_size_512_still_reads(tmp_path: Path, tiny_model_folder: Path) -> None:
    folder = edited_folder(tmp_path, tiny_model_folder, lambda d: d["input"].__setitem__("in_plane_size", [512, 256]))
    assert read_config(folder).input.in_plane_size == (512, 256)


# 4. One line instead of a traceback -----------------------------------------------------------------------

def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("where", ["training", "network.args", "validation"])
@pytest.mark.parametrize("depth", [100_000, 600, 100])
def test_deeply_nested_model_json_is_one_line(tmp_path: Path, tiny_model_folder: Path, where: str, depth: int,
                                              capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "nested"
    shutil.copytree(tiny_model_folder, folder)
    data = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    section = data
    for key in where.split("."):
        section = section[key]
    section["deep"] = "__DEEP__"
    (folder / CONFIG_NAME).write_text(json.dumps(data).replace('"__DEEP__"', nested(depth)))
    with pytest.raises(ModelFolderError, match="nest") as caught:
        read_config(folder)
    assert "\n" not in str(caught.value)
    source = write_volume(tmp_path / "a.nii.gz")
    code, _, err = run(["segment", source, "-o", tmp_path / "out", "--model", folder, "--device", "cpu"], capsys)
    assert_one_error_line(code, err, CONFIG_NAME)
    monkeypatch.setenv(registry.REGISTRY_ENV, str(tmp_path / "registry.json"))
    code, out, err = run(["models", "--path", folder], capsys)
    assert code == 0 and "Traceback" not in err and "unusable" in out


def test_deeply_nested_int8_record_and_registry_are_one_line(tmp_path: Path, tiny_model_folder: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    from NeonatalLungSegLib.models.int8_network import INT8_RECORD, read_record

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    (folder / INT8_RECORD).write_text(nested(100_000))
    with pytest.raises(ModelFolderError, match=INT8_RECORD) as caught:
        read_record(folder)
    assert "\n" not in str(caught.value)
    registry_path = tmp_path / "registry.json"
    monkeypatch.setenv(registry.REGISTRY_ENV, str(registry_path))
    for text in ('{"folders": ' + nested(100_000) + "}", b"\xff\xfe not utf-8"):
        if isinstance(text, bytes):
            registry_path.write_bytes(text)
        else:
            registry_path.write_text(text)
        assert registry.remembered_paths() == []
        code, _, err = run(["models"], capsys)
        assert code == 0 and "Traceback" not in err


@pytest.mark.parametrize("architecture", ["annotations", "unet", "__builtins__", "FLEXUNET_BACKBONE", "MedNeXtS",
                                          "get_pretrained_resnet_medicalnet", "drop_connect", "BlockArgs",
                                          "Optional", "Union", "__loader__"])
def test_monai_architecture_must_name_a_network_class(tmp_path: Path, tiny_model_folder: Path,
                                                      architecture: str, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("monai")
    from NeonatalLungSegLib.models.network import build_network

    def edit(data: dict) -> None:
        data["network"] = {"library": "monai", "architecture": architecture, "args": {}}

    folder = edited_folder(tmp_path, tiny_model_folder, edit)
    with pytest.raises(ModelFolderError, match="network class") as caught:
        build_network(read_config(folder))
    assert "\n" not in str(caught.value)
    source = write_volume(tmp_path / "a.nii.gz")
    code, _, err = run(["segment", source, "-o", tmp_path / "out", "--model", folder, "--device", "cpu"], capsys)
    assert_one_error_line(code, err, architecture)


@pytest.mark.parametrize("key", ["pretrained", "pretrained_path", "weights_url"])
def test_network_args_never_ask_for_downloaded_weights(tmp_path: Path, tiny_model_folder: Path, key: str) -> None:
    pytest.importorskip("monai")
    from NeonatalLungSegLib.models.network import build_network

    def edit(data: dict) -> None:
        data["network"] = {"library": "monai", "architecture": "DenseNet121", "args": {key: True}}

    folder = edited_folder(tmp_path, tiny_model_folder, edit)
    with pytest.raises(ModelFolderError, match=key):
        build_network(read_config(folder))


@pytest.mark.parametrize("damage", ["half", "garbage", "empty"])
def test_a_damaged_int8_file_with_a_matching_record_is_one_line(tmp_path: Path, int8_folder: Path, mock_cpu,
                                                                damage: str, capsys: pytest.CaptureFixture) -> None:
    """Someone rewrote the record for a broken file (the checksums match): OpenVINO's compile error is one line
    naming the file, never a traceback."""
    from NeonatalLungSegLib.models.int8_network import INT8_NAME, INT8_RECORD

    mock_cpu(VNNI_CPU)
    folder = tmp_path / "model"
    shutil.copytree(int8_folder, folder)
    onnx_path = folder / INT8_NAME
    raw = onnx_path.read_bytes()
    onnx_path.write_bytes({"half": raw[: len(raw) // 2], "garbage": b"\x08\x07junk" * 100, "empty": b""}[damage])
    record = json.loads((folder / INT8_RECORD).read_text(encoding="utf-8"))
    record["sha256"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    (folder / INT8_RECORD).write_text(json.dumps(record))
    with pytest.raises(ModelFolderError, match=INT8_NAME) as caught:
        Segmenter.load(folder, device="cpu", precision="int8")
    assert "\n" not in str(caught.value)
    source = write_volume(tmp_path / "a.nii.gz")
    code, _, err = run(["segment", source, "-o", tmp_path / "out", "--model", folder, "--device", "cpu",
                        "--precision", "int8"], capsys)
    assert_one_error_line(code, err, INT8_NAME)


# 5. Privacy: identifiers kept out by what the values look like ---------------------------------------------

pair = labelled_pair


def folder_text(root: Path) -> bytes:
    """Every byte under ``root``, gzip files decompressed."""
    found = b""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        found += gzip.decompress(raw) if path.name.endswith(".gz") else raw
    return found


IDENTIFYING_METADATA = [
    ({"Name": "John Doe"}, "Name"),
    ({"full_name": "John Doe"}, "full_name"),
    ({"PN": "Doe^John"}, "PN"),
    ({"Patiënt": "x"}, "Patiënt"),
    ({"pacjent": "x"}, "pacjent"),
    ({"Пациент": "x"}, "Пациент"),
    ({"患者": "x"}, "患者"),
    ({"extra": {"paciente": "x"}}, "paciente"),
    ({"comment": "scan of John Doe, week 2"}, "comment"),
    ({"comment": "Doe^John"}, "comment"),
    ({"comment": "Doe, John"}, "comment"),
    ({"notes": ["fine", "born 2024-03-05"]}, "notes[1]"),
    ({"notes": "DOB 05/03/2024"}, "notes"),
    ({"notes": "born 5 March 2024"}, "notes"),
    ({"notes": "MRN 12345678"}, "notes"),
    ({"notes": "id MRN12345678"}, "notes"),
    ({"extra": {"tag": "PID-1234567"}}, "tag"),
    ({"name": "Jane Roe"}, "name"),
]


@pytest.mark.parametrize("metadata, field", IDENTIFYING_METADATA)
def test_identifying_values_are_refused_whatever_the_key(tmp_path: Path, metadata: dict, field: str) -> None:
    root = tmp_path / "tf"
    add_case(root, *pair(1), "first")
    before = folder_text(root)
    with pytest.raises(InputError) as caught:  # an InputError, so every command answers it with one line
        add_case(root, *pair(0), "a", metadata=metadata)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError) and "\n" not in message and field in message
    assert folder_text(root) == before  # nothing written, the manifest unchanged


@pytest.mark.parametrize("source", ["John Doe", "Doe^John", "from Jane Roe", "MRN 00123456", "scan 2024-03-05"])
def test_identifying_source_is_refused_and_never_reaches_the_manifest(tmp_path: Path, source: str) -> None:
    with pytest.raises(InputError, match="source"):
        add_case(tmp_path / "tf", *pair(0), "a", source=source)
    assert not (tmp_path / "tf" / MANIFEST_NAME).exists()


@pytest.mark.parametrize("subject", ["John Doe", "Doe^John"])
def test_a_subject_that_looks_like_a_name_is_refused(tmp_path: Path, subject: str) -> None:
    with pytest.raises(InputError, match="subject"):
        add_case(tmp_path / "tf", *pair(0), subject)
    assert not (tmp_path / "tf").exists() or b"Doe" not in folder_text(tmp_path / "tf")


@pytest.mark.parametrize("description", ["scans of Doe^John", "born 2024-03-05", "MRN 12345678"])
def test_identifying_description_is_refused(tmp_path: Path, description: str) -> None:
    with pytest.raises(InputError, match="description"):
        add_case(tmp_path / "tf", *pair(0), "a", description=description)
    assert not (tmp_path / "tf" / MANIFEST_NAME).exists()


def test_export_refuses_identifying_extra_fields(tmp_path: Path) -> None:
    geometry = Geometry(size=(12, 10, 6), spacing=(0.7, 0.8, 1.5), origin=(0.0, 0.0, 0.0),
                        direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    image = np.random.default_rng(0).integers(0, 400, geometry.array_shape).astype(np.int16)
    labels = np.zeros(geometry.array_shape, np.uint8)
    labels[1:4, 2:6, 1:5], labels[1:4, 2:6, 7:11] = 1, 2
    with pytest.raises(InputError, match="comment"):
        export.export_case(tmp_path / "tf", image, labels, geometry, reviewer="Dr A",
                           extra={"comment": "baby of Jane Roe"})
    assert not (tmp_path / "tf" / MANIFEST_NAME).exists()
    with pytest.raises(InputError, match="reviewer"):
        export.export_case(tmp_path / "tf", image, labels, geometry, reviewer="Roe^Jane")
    # what the software itself writes still passes: the reviewer's name, the time, hashes, the model
    result = export.export_case(tmp_path / "tf", image, labels, geometry, reviewer="Dr Alice Smith",
                                model={"name": "neonatal-lung-unet-r50", "version": "2.8.0",
                                       "weights_sha256": "1234567890" * 6 + "abcd", "backend": "openvino 2026.4.1",
                                       "precision_reason": "chosen for AVX512-VNNI"},
                                extra={"correction": {"manual_edits_counted": (  # as aiCorrect.py writes it
                                    "operations that modified a segment's labelmap other than Segment and AI "
                                    "clicks (SourceRepresentationModified events, those less than 0.5 s apart "
                                    "counted as one operation)")}})
    assert result.sidecar["reviewer"] == "Dr Alice Smith"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), np.float32("nan"),
                                   [1.0, float("nan")]])
def test_non_finite_numbers_are_refused_not_written_as_bare_nan(tmp_path: Path, value: Any) -> None:
    root = tmp_path / "tf"
    with pytest.raises(InputError, match="finite") as caught:
        add_case(root, *pair(0), "a", metadata={"measure": value})
    assert "measure" in str(caught.value) and "\n" not in str(caught.value)
    assert not (root / MANIFEST_NAME).exists() and not (root / "cases").exists()


def test_sidecars_are_strict_json(tmp_path: Path) -> None:
    """NumPy numbers are written as plain numbers, and a reader that refuses NaN reads every sidecar."""
    root = tmp_path / "tf"
    record = add_case(root, *pair(0), "a", metadata={"count": np.int64(3), "share": np.float32(0.25)})

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in a sidecar")

    data = json.loads((root / record.sidecar).read_text(encoding="utf-8"), parse_constant=refuse)
    assert data["count"] == 3 and data["share"] == 0.25
    json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"), parse_constant=refuse)


def test_ordinary_values_still_pass(tmp_path: Path) -> None:
    """What converters and the module write today keeps working (no false alarm on the usual fields)."""
    root = tmp_path / "tf"
    add_case(root, *pair(0), "syn-neonatal-000123", review_status="reference", source="synthetic",
             metadata={"generator": {"seed": 1234567, "anatomy": "atlas", "variant_family": "neonatal"}},
             description="synthetic neonatal chest MRI (neonatal anatomy family); no real neonatal MRI")
    add_case(tmp_path / "ct", *pair(3), "ct-001", source="ct-lung-slices",  # a dataset's title (prepare-ct)
             description="chest CT slices from the public 'Finding and Measuring Lungs in CT Data' set")
    add_case(root, *pair(1), "ct-004", source="ct-lung-slices", label_scheme="right_left",
             metadata={"source_file": "x_train.npy", "source_index": 17, "reviewer": "dr x"})
    add_case(root, *pair(4), "s0-syn-neonatal-000123", source="syn/syn-neonatal-000123_v001")  # as combine writes
    add_case(root, *pair(2), "vol-0123456789abcdef", source="3D Slicer NeonatalLungSeg export",
             metadata={"note": "right base corrected; 0.5 mm rim", "volume_ml": 12.5})
    assert len(read_training_folder(root).cases) == 4


def test_combine_refuses_a_source_folder_named_like_a_person(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """``combine`` writes the source folder's name into every case's ``source`` (and the manifest)."""
    combine = pytest.importorskip("neonatal_lung_training.datasets.combine")
    named = tmp_path / "John Doe"
    add_case(named, *pair(0), "a")
    add_case(named, *pair(1), "b")
    out = tmp_path / "mix"
    code = combine.main(["-o", str(out), "--source", str(named)])
    err = capsys.readouterr().err
    assert_one_error_line(code, err, "source")
    assert not out.exists()
