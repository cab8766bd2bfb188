"""The nnU-Net raw layout, both ways, and plain image/mask pair folders.

In: ``nnunet_cases`` and ``pair_cases`` list the cases of a source (``import_cases`` turns them into a
training folder). Out: ``export-nnunet`` writes a training folder as an nnU-Net v2 raw dataset, for groups
who also train nnU-Net::

    neonatal-lung-seg export-nnunet TRAINING_FOLDER -o Dataset501_NeonatalLung [--reviewed-only] [--latest-only]

writes ``imagesTr/<case_id>_0000.nii.gz``, ``labelsTr/<case_id>.nii.gz`` and ``dataset.json`` (one channel
"MRI"; labels background 0, right_lung 1, left_lung 2, or background 0, lung 1), into a new or empty folder,
all or nothing: everything is written into a temporary sibling that is renamed into place at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import SimpleITK as sitk

from NeonatalLungSegLib.dataset.training_folder import LABEL_SCHEMES, read_training_folder
from NeonatalLungSegLib.dataset.training_folder_checks import without_metadata
from NeonatalLungSegLib.errors import InputError, exit_status
from NeonatalLungSegLib.volumes.volume_io import VOLUME_SUFFIXES, verify_image_file, volume_suffix

_CHANNEL = re.compile(r"(.+)_(\d{4})")
FILE_ENDING = ".nii.gz"
CHANNEL_NAME = "MRI"  # nnU-Net z-scores any channel not called "CT", as this project's preprocessing does


# In: the two source layouts, each a list of (case name, image file, label file).

def _files(folder: Path, ending: str | None = None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        suffix = (ending if path.name.endswith(ending) else None) if ending else volume_suffix(path)
        if suffix is None:
            continue
        stem = path.name[: -len(suffix)]
        if stem in found:
            raise InputError(f"{path}: same case name {stem!r} as {found[stem].name}")
        found[stem] = path
    return found


def _paired(images: dict[str, Path], labels: dict[str, Path], image_dir: Path, label_dir: Path
            ) -> list[tuple[str, Path, Path]]:
    if not images:
        raise InputError(f"{image_dir}: holds no images")
    missing = sorted(set(images) - set(labels))
    if missing:
        raise InputError(f"{label_dir}: no label for {len(missing)} image(s) ({', '.join(missing[:3])}"
                         f"{', ...' if len(missing) > 3 else ''}); every image needs its mask")
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise InputError(f"{image_dir}: no image for {len(orphans)} label file(s) ({', '.join(orphans[:3])}"
                         f"{', ...' if len(orphans) > 3 else ''})")
    return [(name, images[name], labels[name]) for name in sorted(images)]


def nnunet_cases(dataset: Path) -> tuple[list[tuple[str, Path, Path]], dict]:
    """The cases of an nnU-Net raw dataset (``imagesTr/CASE_0000``, ``labelsTr/CASE``) and its dataset.json."""
    meta_path = dataset / "dataset.json"
    if not meta_path.is_file():
        raise InputError(f"{meta_path}: not found (an nnU-Net raw dataset holds imagesTr/, labelsTr/ and "
                         "dataset.json)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise InputError(f"{meta_path}: unreadable ({str(error)[:160]})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{meta_path}: not a JSON object")
    channels = meta.get("channel_names", meta.get("modality"))
    if isinstance(channels, dict) and len(channels) > 1:
        raise InputError(f"{meta_path}: {len(channels)} channels ({', '.join(map(str, channels.values()))}); "
                         "only single-channel datasets are supported")
    ending = meta.get("file_ending", ".nii.gz")
    if not isinstance(ending, str) or volume_suffix(Path("x" + ending)) != ending.lower():
        raise InputError(f"{meta_path}: file_ending {ending!r} is not read here; use one of "
                         f"{', '.join(VOLUME_SUFFIXES)}")
    for sub in ("imagesTr", "labelsTr"):
        if not (dataset / sub).is_dir():
            raise InputError(f"{dataset / sub}: not found (an nnU-Net raw dataset holds imagesTr/ and labelsTr/)")
    images: dict[str, Path] = {}
    for stem, path in _files(dataset / "imagesTr", ending).items():
        match = _CHANNEL.fullmatch(stem)
        if match is None:
            raise InputError(f"{path}: lacks nnU-Net's channel suffix (CASE_0000{ending}); for plain image/mask "
                             "folders use --pairs")
        if match.group(2) != "0000":
            raise InputError(f"{path}: channel {match.group(2)}; only single-channel datasets are supported")
        images[match.group(1)] = path
    return _paired(images, _files(dataset / "labelsTr", ending), dataset / "imagesTr", dataset / "labelsTr"), meta


def pair_cases(image_dir: Path, label_dir: Path) -> list[tuple[str, Path, Path]]:
    """Image/mask pairs: files with the same name (any volume format) in two folders."""
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise InputError(f"{folder}: not a folder")
    return _paired(_files(image_dir), _files(label_dir), image_dir, label_dir)




# Out: a training folder as an nnU-Net v2 raw dataset.

def _check_output(output: Path) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"{output}: already exists and is not an empty folder; choose a new folder")


def export_nnunet(folder_path: Path, output: Path, *, reviewed_only: bool = False, latest_only: bool = False,
                  dataset_name: str | None = None, echo=print) -> int:
    """Write the training folder's cases as an nnU-Net v2 raw dataset; returns the number of cases.

    ``reviewed_only`` and ``latest_only`` select cases as ``train`` does (reviewed and reference cases; the
    newest version of each subject). Cases keep their case ids. Where the folder mixes the two label schemes,
    right and left are merged into one "lung" label (nnU-Net needs one label set) and the summary says so.
    """
    _check_output(output)
    folder = read_training_folder(folder_path)
    cases = folder.latest_versions() if latest_only else list(folder.cases)
    if reviewed_only:
        cases = [c for c in cases if c.review_status in ("reviewed", "reference")]
    if not cases:
        raise InputError(f"{folder_path}: no {'reviewed or reference ' if reviewed_only else ''}cases to export")
    schemes = {c.label_scheme for c in cases}
    scheme = "lung" if "lung" in schemes else "right_left"
    merged = len(schemes) > 1
    name = dataset_name or output.name
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        for sub in ("imagesTr", "labelsTr"):
            (staging / sub).mkdir()
        for record in cases:
            _, label = folder.read_case(record)  # checks the files and that both share one grid
            image = without_metadata(sitk.ReadImage(str(folder.root / record.image)))  # its own voxel type
            label.CopyInformation(image)
            if merged and record.label_scheme == "right_left":
                label = sitk.Cast(label > 0, sitk.sitkUInt8)
            for item, path in ((image, staging / "imagesTr" / f"{record.case_id}_0000{FILE_ENDING}"),
                               (without_metadata(label), staging / "labelsTr" / f"{record.case_id}{FILE_ENDING}")):
                sitk.WriteImage(item, str(path), useCompression=True)
                verify_image_file(path, item)
        description = (f"exported from a neonatal-lung-seg training folder ({len(cases)} of {len(folder.cases)} "
                       f"cases{', reviewed or reference only' if reviewed_only else ''}"
                       f"{', newest version of each subject' if latest_only else ''})"
                       f"{'; right and left merged into lung' if merged else ''}")
        meta = {"name": name, "description": description, "channel_names": {"0": CHANNEL_NAME},
                "labels": {"background": 0, **LABEL_SCHEMES[scheme]}, "numTraining": len(cases),
                "file_ending": FILE_ENDING,
                # not read by nnU-Net: what a split by subject and the lineage need
                "neonatal_lung_seg": {"training_folder_manifest_sha256": folder.manifest_sha256,
                                      "sides_merged": merged,
                                      "subjects": {c.case_id: c.subject for c in cases}}}
        (staging / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        staging.chmod(0o755)
        _check_output(output)  # still new or empty: nothing else wrote there meanwhile
        if output.exists():
            output.rmdir()
        os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    echo(f"wrote {len(cases)} case(s) to {output} as nnU-Net raw dataset {name!r} (labels "
         f"{', '.join(f'{k} {v}' for k, v in meta['labels'].items())})"
         + ("; the folder mixes label schemes, so right and left were merged into lung" if merged else ""))
    if not re.fullmatch(r"Dataset\d{3}_\w+", output.name):
        echo(f"note: nnU-Net finds raw datasets by folder name (DatasetNNN_Name under $nnUNet_raw); rename "
             f"{output.name} accordingly before planning")
    return len(cases)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neonatal-lung-seg export-nnunet",
                                     description="Write a training folder as an nnU-Net v2 raw dataset.")
    parser.add_argument("folder", type=Path, help="training folder")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="new (or empty) dataset folder, e.g. $nnUNet_raw/Dataset501_NeonatalLung")
    parser.add_argument("--reviewed-only", action="store_true", help="only reviewed and reference cases")
    parser.add_argument("--latest-only", action="store_true", help="only the newest version of each subject")
    parser.add_argument("--dataset-name", help="dataset.json's name (default: the output folder's name)")
    args = parser.parse_args(argv)

    def run() -> int:
        export_nnunet(args.folder, args.output, reviewed_only=args.reviewed_only, latest_only=args.latest_only,
                      dataset_name=args.dataset_name)
        return 0

    return exit_status(run)


if __name__ == "__main__":
    sys.exit(main())
