"""Which Slicer versions the module supports, and the message for the others.

Slicer 5.10 is the minimum: the correction path uses ``vtkSlicerSegmentEditorLogic`` (new in 5.10), and on
Slicer 5.8 ``parameterNodeWrapper.connectGui`` returns None, so the widget bindings could never be
disconnected and would pile up on every module entry. On an older Slicer the module says so in its panel
and leaves Segment disabled instead of failing half-way.
"""

import slicer

MINIMUM_SLICER = (5, 10)


def slicerVersion():
    app = getattr(slicer, "app", None)
    return (int(getattr(app, "majorVersion", 0)), int(getattr(app, "minorVersion", 0)))


def isSupported():
    return slicerVersion() >= MINIMUM_SLICER


def unsupportedMessage():
    """'' on a supported Slicer, else one sentence for the module panel."""
    if isSupported():
        return ""
    major, minor = slicerVersion()
    return (f"This module needs 3D Slicer {MINIMUM_SLICER[0]}.{MINIMUM_SLICER[1]} or later (this is "
            f"{major}.{minor}): please install a current Slicer release.")
