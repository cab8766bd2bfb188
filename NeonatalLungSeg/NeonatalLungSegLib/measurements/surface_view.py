"""A 3D surface view of the lungs, rendered offscreen with VTK in a child process.

Why a child process: the engine itself never imports VTK, and an OpenGL context that cannot be made
(no display, no EGL, no OSMesa) can abort the process that asks for one instead of raising. So the parent
writes the labels to a temporary ``.npz``, runs this file as a script (it imports nothing from the library),
and gets a PNG back, or no picture and the reason in one line. Without a display the child asks VTK for EGL
first (Mesa's ``libegl1 libegl-mesa0 libgl1-mesa-dri`` on Debian), then OSMesa.

The view is anterior: the camera in front of the patient, superior up, so the patient's right lung is on the
viewer's left, as in the slice views.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

WINDOW_CLASSES = ("vtkEGLRenderWindow", "vtkOSOpenGLRenderWindow")
COLOURS = {1: (0.0, 0.447, 0.698), 2: (0.902, 0.624, 0.0)}  # right blue, left orange (figures.py)
TIMEOUT_S = 120.0


def render_surface_png(labels_lps: np.ndarray, spacing: tuple[float, float, float], python: str | None = None,
                       size: tuple[int, int] = (720, 600)) -> tuple[bytes | None, str]:
    """PNG of the lungs' surfaces (labels on an LPS-ordered grid, (k, j, i), spacing (i, j, k) mm), or None and
    why not."""
    kji = np.nonzero(labels_lps)
    box = tuple(slice(max(int(a.min()) - 1, 0), int(a.max()) + 2) for a in kji)
    preset = os.environ.get("VTK_DEFAULT_OPENGL_WINDOW")  # the user's choice first, then VTK's own with a display
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    attempts = ([None] if preset or display else []) + [w for w in WINDOW_CLASSES if w != preset]
    reasons = []
    with tempfile.TemporaryDirectory(prefix="lung-surface-") as folder:
        source, target = Path(folder) / "labels.npz", Path(folder) / "surface.png"
        np.savez(source, labels=np.ascontiguousarray(labels_lps[box], dtype=np.uint8),
                 spacing=np.asarray(spacing, dtype=float), size=np.asarray(size))
        for window in attempts:
            env = dict(os.environ)
            if window:
                env["VTK_DEFAULT_OPENGL_WINDOW"] = window
            try:
                done = subprocess.run([python or sys.executable, str(Path(__file__).resolve()), str(source),
                                       str(target)], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired) as exc:
                reasons.append(f"{window or 'default window'}: {type(exc).__name__}")
                continue
            if done.returncode == 0 and target.is_file() and target.stat().st_size > 0:
                return target.read_bytes(), ""
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            reasons.append(f"{window or 'default window'}: {last[:160]}")
    return None, "no offscreen OpenGL rendering here (" + "; ".join(reasons) + ")"


def _render(source: Path, target: Path) -> None:
    """The child: labels.npz -> smoothed surfaces -> offscreen render -> PNG."""
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401 - registers the OpenGL render window classes
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonCore import vtkLogger, vtkObject
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersCore import vtkPolyDataNormals, vtkWindowedSincPolyDataFilter
    from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D
    from vtkmodules.vtkIOImage import vtkPNGWriter
    from vtkmodules.vtkRenderingCore import (vtkActor, vtkPolyDataMapper, vtkRenderer, vtkRenderWindow,
                                             vtkWindowToImageFilter)

    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
    vtkObject.GlobalWarningDisplayOff()
    data = np.load(source)
    labels, spacing, size = data["labels"], data["spacing"], data["size"]
    image = vtkImageData()
    image.SetDimensions(labels.shape[2], labels.shape[1], labels.shape[0])
    image.SetSpacing(*(float(s) for s in spacing))
    image.GetPointData().SetScalars(numpy_to_vtk(labels.ravel(), deep=True))
    renderer = vtkRenderer()
    renderer.SetBackground(1.0, 1.0, 1.0)
    for label, colour in COLOURS.items():
        surface = vtkDiscreteFlyingEdges3D()
        surface.SetInputData(image)
        surface.SetValue(0, label)
        smooth = vtkWindowedSincPolyDataFilter()
        smooth.SetInputConnection(surface.GetOutputPort())
        smooth.SetNumberOfIterations(40)
        smooth.SetPassBand(0.01)
        smooth.NormalizeCoordinatesOn()
        smooth.NonManifoldSmoothingOn()
        normals = vtkPolyDataNormals()
        normals.SetInputConnection(smooth.GetOutputPort())
        mapper = vtkPolyDataMapper()
        mapper.SetInputConnection(normals.GetOutputPort())
        mapper.ScalarVisibilityOff()
        actor = vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*colour)
        actor.GetProperty().SetSpecular(0.2)
        renderer.AddActor(actor)
    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(int(size[0]), int(size[1]))
    window.AddRenderer(renderer)
    camera = renderer.GetActiveCamera()
    centre = [(n - 1) * s / 2 for n, s in zip(labels.shape[::-1], spacing)]
    camera.SetFocalPoint(*centre)
    camera.SetPosition(centre[0], centre[1] - 1000.0, centre[2])  # in front: LPS y grows posteriorly
    camera.SetViewUp(0.0, 0.0, 1.0)
    camera.Elevation(12.0)  # a little from above, so that the apices and the diaphragm's dome show depth
    camera.OrthogonalizeViewUp()
    renderer.ResetCamera()
    camera.ParallelProjectionOn()  # framed to the lungs' width and height, not to their bounding sphere
    width, height = (labels.shape[2] - 1) * spacing[0], (labels.shape[0] - 1) * spacing[2]
    camera.SetParallelScale(0.54 * max(height, width * float(size[1]) / float(size[0])))
    window.Render()
    grab = vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ReadFrontBufferOff()
    grab.Update()
    pixels = vtk_to_numpy(grab.GetOutput().GetPointData().GetScalars())
    if pixels.size == 0 or int(pixels.min()) == int(pixels.max()):
        raise RuntimeError("the render came back as one flat colour (no working OpenGL context)")
    writer = vtkPNGWriter()
    writer.SetFileName(str(target))
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    window.Finalize()


if __name__ == "__main__":
    try:
        _render(Path(sys.argv[1]), Path(sys.argv[2]))
    except Exception as error:  # noqa: BLE001 - the parent gets one line, never a traceback
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
