"""The per-case HTML report: one self-contained file (every picture inline as a base64 PNG, no script, no
external style or font) that reads on screen and prints to PDF from a browser (A4, nothing split across pages
that should stay whole)."""

from __future__ import annotations

import base64
import datetime
import html

import numpy as np

from ..geometry import Geometry
from .descriptors import CASE, INTENSITY, LUNGS, RESEARCH_USE, SHAPE, Descriptor
from .figures import canonical, histogram_png, overlay_pngs
from .surface_view import render_surface_png

STYLE = """
:root { --ink: #1b1b1b; --muted: #5a5a5a; --rule: #c8c8c8; }
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; color: var(--ink); margin: 24px auto;
       max-width: 1000px; padding: 0 16px; font-size: 14px; line-height: 1.4; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 22px 0 8px; border-bottom: 1px solid var(--rule); }
.research { display: inline-block; border: 2px solid #b00020; color: #b00020; font-weight: bold; padding: 4px 10px;
            margin: 8px 0; }
.meta td { padding: 1px 12px 1px 0; vertical-align: top; } .meta td:first-child { color: var(--muted); }
.views { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; break-inside: avoid; page-break-inside: avoid; }
.views figure { flex: 1 1 220px; max-width: 240px; } img { max-width: 100%; height: auto; display: block; }
.surface img { max-width: 560px; } dl.definitions { font-size: 12px; columns: 2; column-gap: 24px; }
dl.definitions dt { font-weight: bold; break-after: avoid; } dl.definitions dd { margin: 0 0 4px; break-inside: avoid; }
figcaption { color: var(--muted); font-size: 12px; }
table.descriptors { border-collapse: collapse; width: 100%; font-size: 13px; }
table.descriptors th, table.descriptors td { border-bottom: 1px solid var(--rule); padding: 3px 8px;
                                             text-align: right; }
table.descriptors th:first-child, table.descriptors td:first-child { text-align: left; }
table.descriptors td.unit { text-align: left; color: var(--muted); }
table.descriptors tr { break-inside: avoid; page-break-inside: avoid; }
thead { display: table-header-group; } .group td { font-weight: bold; background: #f1f1f1; text-align: left; }
.note { color: var(--muted); font-size: 12px; }
@page { size: A4; margin: 14mm; }
@media print { body { margin: 0; max-width: none; font-size: 11px; }
               h2 { break-after: avoid; page-break-after: avoid; }
               .views figure { max-width: 23%; } .surface img { max-width: 55%; } }
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _value(value: object, digits: int) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _rows(group: str, descriptors: tuple[Descriptor, ...], entry_of) -> list[str]:
    rows = [f'<tr class="group"><td colspan="5">{html.escape(group)}</td></tr>']
    for d in descriptors:
        cells = "".join(f"<td>{_value(entry_of(lung).get(d.key), d.digits)}</td>" for lung in LUNGS)
        rows.append(f"<tr><td>{html.escape(d.label)}</td>{cells}<td class=\"unit\">{html.escape(d.unit)}</td></tr>")
    return rows


def descriptor_table(descriptors: dict) -> str:
    lungs = descriptors["lungs"]
    body = _rows("Size and shape", SHAPE, lambda lung: lungs[lung])
    body += _rows("Signal intensity (normalised)", INTENSITY, lambda lung: lungs[lung]["intensity"])
    case_values = {"right_left_volume_ratio": descriptors["right_left_volume_ratio"],
                   "weight_kg": descriptors["weight_kg"],
                   "reference_median": descriptors["normalisation"]["reference_median"]}
    body.append('<tr class="group"><td colspan="5">Case</td></tr>')
    for d in CASE:
        body.append(f"<tr><td>{html.escape(d.label)}</td><td colspan=\"3\">{_value(case_values[d.key], d.digits)}"
                    f"</td><td class=\"unit\">{html.escape(d.unit)}</td></tr>")
    return ('<table class="descriptors" id="descriptors"><thead><tr><th>Descriptor</th><th>Right lung</th>'
            '<th>Left lung</th><th>Both lungs</th><th>Unit</th></tr></thead><tbody>' + "\n".join(body)
            + "</tbody></table>")


def definitions() -> str:
    items = [f"<dt>{html.escape(d.label)} ({html.escape(d.unit)})</dt><dd>{html.escape(d.definition)}</dd>"
             for d in (*SHAPE, *INTENSITY, *CASE)]
    return '<dl class="definitions">' + "".join(items) + "</dl>"


def build_report(case: str, descriptors: dict, scan: np.ndarray, labels: np.ndarray, geometry: Geometry, *,
                 sources: dict[str, str], model: dict | None = None, python: str | None = None) -> str:
    """The whole HTML page of one case. ``sources``: what was read ({"scan": ..., "labels": ...})."""
    views = overlay_pngs(scan, labels, geometry)
    _, labels_lps, spacing = canonical(scan, labels, geometry)
    surface, why_not = render_surface_png(labels_lps, spacing, python=python)
    model_text = (f"{model.get('name', '?')} {model.get('version', '')}".strip() if model
                  else "not recorded with the labels")
    normalisation = descriptors["normalisation"]
    meta = [("Scan", sources.get("scan", "")), ("Labels", sources.get("labels", "")), ("Model", model_text),
            ("Grid", " × ".join(map(str, geometry.size)) + " voxels of "
             + " × ".join(f"{s:.3g}" for s in geometry.spacing) + " mm"),
            ("Body weight", f"{descriptors['weight_kg']:g} kg" if descriptors["weight_kg"] else "not given"),
            ("Written", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Lung descriptors: {html.escape(case)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Lung descriptors: {html.escape(case)}</h1>",
        f'<div class="research">{html.escape(RESEARCH_USE)}</div>',
        '<table class="meta">' + "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                                         for k, v in meta) + "</table>",
        "<h2>Lungs on the scan</h2>",
        ('<p class="note">Right lung blue, left lung orange; radiological convention (the patient\'s right on the '
         "left); slices through the lungs' centre, sagittal slices through each lung's centre.</p>"),
        '<div class="views">' + "".join(f"<figure>{_img(png, title)}<figcaption>{html.escape(title)}</figcaption>"
                                        "</figure>" for title, png in views) + "</div>",
        "<h2>Surface view</h2>",
        (f'<figure class="surface">{_img(surface, "3D surface view, anterior")}<figcaption>Anterior view (the '
         "patient's right lung on the left), smoothed surfaces rendered offscreen with VTK.</figcaption></figure>"
         if surface else f'<p class="note" id="no-surface">No 3D surface view: {html.escape(why_not)}.</p>'),
        "<h2>Signal intensity</h2>",
        (f"<figure>{_img(histogram_png(descriptors), 'intensity histogram per lung')}<figcaption>Signal divided "
         f"by the median of the soft tissue within {normalisation['shell_mm']:g} mm of the lungs (reference "
         f"median {normalisation['reference_median']:.4g} scan units, {normalisation['reference_voxels']:,} "
         "voxels). Dashed: the low- and high-signal thresholds.</figcaption></figure>"),
        "<h2>Descriptors</h2>", descriptor_table(descriptors),
        "<h2>Definitions</h2>", definitions(),
        ('<p class="note">More on each definition, the units and the normalisation: docs/descriptors.md of '
         "neonatal-lung-seg. Volumes and shapes are measured on the scan's own grid, without resampling. "
         f"{html.escape(RESEARCH_USE.capitalize())}.</p>"),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
