"""Stand-in for ``slicer.parameterNodeWrapper``: typed properties stored in a real MRML parameter node.

Mirrors the parts of Slicer's wrapper the module uses: ``@parameterNodeWrapper`` classes whose annotated
attributes live in a ``vtkMRMLScriptedModuleNode`` (values as parameters, MRML nodes as node references),
defaults written on first wrap, ``Choice`` / ``WithinRange`` validation, and ``connectGui`` binding widgets
whose ``SlicerParameterName`` property names a parameter, with the same widget/type pairs as Slicer's
connectors (an unsupported pair raises, as in Slicer).

As strict as the real wrapper where the module's tests rely on it:
- booleans are stored as "True" / "False" (Python's ``str(bool)``, as Slicer's serializer writes them);
- every bound widget is rewritten on every parameter change (Slicer's ``_updateGuiFromParameterNode``
  writes each connector, changed or not), so a field being typed in is rewritten too;
- ``connectGui`` returns None on Slicer 5.8 (``slicer.app.minorVersion`` < 10), where a later
  ``disconnectGui(None)`` disconnects nothing: bindings pile up on every module entry.
"""

from __future__ import annotations

import pathlib
import typing

import vtk

import ctk
import mrmlWidgets
import qt
import slicer


class Choice:
    def __init__(self, choices) -> None:
        self.choices = list(choices)


class WithinRange:
    def __init__(self, minimum, maximum) -> None:
        self.minimum, self.maximum = minimum, maximum


def _split(hint):
    if typing.get_origin(hint) is typing.Annotated:
        base, *annotations = typing.get_args(hint)
        return base, annotations
    return hint, []


def _isNode(base) -> bool:
    return isinstance(base, type) and issubclass(base, slicer.vtkMRMLNode)


def _encode(base, value) -> str:
    if base is bool:
        return str(bool(value))
    return str(value)


def _decode(base, text: str):
    if base is bool:
        if text not in ("True", "False"):
            raise ValueError(f"stored boolean must be 'True' or 'False', got {text!r}")
        return text == "True"
    if base in (int, float):
        return base(text)
    if base is pathlib.Path:
        return pathlib.Path(text)
    return text


class _Connector:
    """One widget <-> one parameter, for the widget/type pairs Slicer's guiConnectors support."""

    def __init__(self, widget, base, annotations) -> None:
        self.widget, self.base = widget, base
        kind = type(widget)
        if kind is qt.QCheckBox and base is bool:
            self.signal, self.attribute = widget.stateChanged, "checked"
        elif kind is qt.QSpinBox and base is int:
            self.signal, self.attribute = widget.valueChanged, "value"
            for a in annotations:
                if isinstance(a, WithinRange):
                    widget.setRange(a.minimum, a.maximum)
        elif kind is qt.QDoubleSpinBox and base is float:
            self.signal, self.attribute = widget.valueChanged, "value"
            for a in annotations:
                if isinstance(a, WithinRange):
                    widget.minimum, widget.maximum = a.minimum, a.maximum
        elif kind is qt.QLineEdit and base is str:
            self.signal, self.attribute = widget.textChanged, "text"
        elif kind is qt.QComboBox and base in (str, int, float, bool):
            choice = next((a for a in annotations if isinstance(a, Choice)), None)
            if choice is None:
                raise RuntimeError("ComboBoxToStringableConnector requires the Choice annotation to be used.")
            self.choices = choice.choices
            widget.clear()
            for c in self.choices:
                widget.addItem(str(c))
            self.signal, self.attribute = widget.currentIndexChanged, None
        elif kind is ctk.ctkPathLineEdit and base is pathlib.Path:
            self.signal, self.attribute = widget.currentPathChanged, "currentPath"
        elif kind is mrmlWidgets.qMRMLNodeComboBox and _isNode(base):
            widget.nodeTypes = [base.__name__]
            self.signal, self.attribute = widget.currentNodeChanged, None
        else:
            raise RuntimeError(f"Unable to create GUI connector from datatype '{base}' to widget type '{kind}'")

    def read(self):
        if isinstance(self.widget, qt.QComboBox):
            return self.choices[self.widget.currentIndex]
        if isinstance(self.widget, mrmlWidgets.qMRMLNodeComboBox):
            return self.widget.currentNode()
        value = getattr(self.widget, self.attribute)
        return pathlib.Path(value) if self.base is pathlib.Path else value

    def write(self, value) -> None:
        if isinstance(self.widget, qt.QComboBox):
            self.widget.currentIndex = self.choices.index(value)
        elif isinstance(self.widget, mrmlWidgets.qMRMLNodeComboBox):
            self.widget.setCurrentNode(value)
        else:
            setattr(self.widget, self.attribute, str(value) if self.base is pathlib.Path else value)


def parameterNodeWrapper(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {name: _split(hint) for name, hint in hints.items()}
    defaults = {name: cls.__dict__[name] for name in hints if name in cls.__dict__}

    def make(name, base, annotations):
        def getter(self):
            node = self.parameterNode
            if _isNode(base):
                return node.GetNodeReference(name)
            return _decode(base, node.GetParameter(name))

        def setter(self, value):
            node = self.parameterNode
            if _isNode(base):
                if value is not None and not isinstance(value, base):
                    raise TypeError(f"{name}: expected {base.__name__}, got {type(value).__name__}")
                node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
                return
            allowed = {float: (int, float), pathlib.Path: (pathlib.PurePath,)}.get(base, (base,))
            if base in (str, int, float, bool, pathlib.Path) and (not isinstance(value, allowed)
                                                                   or base is not bool and isinstance(value, bool)):
                raise TypeError(f"{name}: expected {base.__name__}, got {type(value).__name__}")  # as Slicer
            for a in annotations:
                if isinstance(a, Choice) and value not in a.choices:
                    raise ValueError(f"{name}: {value!r} is not one of {a.choices}")
                if isinstance(a, WithinRange) and not a.minimum <= value <= a.maximum:
                    raise ValueError(f"{name}: {value!r} is outside [{a.minimum}, {a.maximum}]")
            node.SetParameter(name, _encode(base, value))

        return property(getter, setter)

    def __init__(self, parameterNode):
        self.parameterNode = parameterNode
        for name, (base, _) in fields.items():
            if not _isNode(base) and not parameterNode.HasParameter(name):  # "" is a value, as in Slicer
                default = defaults.get(name, {bool: False, int: 0, float: 0.0, str: "",
                                              pathlib.Path: pathlib.Path()}.get(base))
                if default is not None and (default != "" or base is not str):
                    setattr(self, name, default)
        self._guis = {}

    def connectGui(self, gui):
        widgets = vars(gui).values() if not isinstance(gui, qt.QWidget) else [gui, *gui.findChildren()]
        connectors = {}
        for widget in widgets:
            name = widget.property("SlicerParameterName") if isinstance(widget, qt.QObject) else None
            if not name:
                continue
            if name not in fields:
                raise ValueError(f"widget {widget.objectName} names unknown parameter {name!r}")
            connector = _Connector(widget, *fields[name])
            connector.write(getattr(self, name))
            connector.slot = (lambda *args, n=name, c=connector: setattr(self, n, c.read()))
            connector.signal.connect(connector.slot)
            connectors[name] = connector

        def toGui(caller=None, event=None):
            for n, c in connectors.items():
                c.write(getattr(self, n))  # every widget, changed or not, as Slicer does

        tag = self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, toGui)
        self._guis[tag] = connectors
        if (slicer.app.majorVersion, slicer.app.minorVersion) < (5, 10):
            return None  # Slicer 5.8: no tag to disconnect with
        return tag

    def disconnectGui(self, tag) -> None:
        for connector in self._guis.pop(tag, {}).values():
            connector.signal.disconnect(connector.slot)
        if tag is not None:
            self.parameterNode.RemoveObserver(tag)

    def AddObserver(self, event, callback, priority=0.0):
        return self.parameterNode.AddObserver(event, callback, priority)

    def RemoveObserver(self, tag):
        self.parameterNode.RemoveObserver(tag)

    namespace = {"__init__": __init__, "connectGui": connectGui, "disconnectGui": disconnectGui,
                 "AddObserver": AddObserver, "RemoveObserver": RemoveObserver, "__doc__": cls.__doc__,
                 "allParameters": property(lambda self: dict(fields))}
    for name, (base, extras) in fields.items():
        namespace[name] = make(name, base, extras)
    return type(cls.__name__, (), namespace)
