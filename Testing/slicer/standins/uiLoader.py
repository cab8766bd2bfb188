"""``slicer.util.loadUI`` / ``childWidgetVariables`` for the stand-ins: builds widgets from the real .ui.

Each ``<widget class=... name=...>`` of the Designer file becomes an instance of the stand-in class of that
name, with its ``<property>`` values (dynamic ones such as SlicerParameterName included), so the wiring tests
run against the very file Slicer loads. An unknown widget class fails loudly.
"""

from __future__ import annotations

import types
import xml.etree.ElementTree as ElementTree

import ctk
import mrmlWidgets
import qt

CLASSES = {name: getattr(module, name) for module in (qt, ctk, mrmlWidgets) for name in dir(module)
           if isinstance(getattr(module, name), type)}


def _value(element):
    child = element[0]
    if child.tag == "bool":
        return child.text == "true"
    if child.tag == "number":
        return int(child.text)
    if child.tag == "stringlist":
        return [s.text for s in child]
    if child.tag == "set":
        return ctk.ctkPathLineEdit.Dirs if child.text == "ctkPathLineEdit::Dirs" else child.text
    return child.text or ""


def _build(element, parent):
    cls = CLASSES.get(element.get("class"))
    if cls is None:
        raise TypeError(f"no stand-in for widget class {element.get('class')!r} ({element.get('name')})")
    widget = cls(parent)
    widget.objectName = element.get("name")
    for prop in element.findall("property"):
        name, value = prop.get("name"), _value(prop)
        if prop.get("stdset") == "0":
            widget.setProperty(name, value)
        elif name in ("geometry", "minimumSize", "orientation"):
            continue
        elif name == "checked":
            widget.checked = value
        else:
            if not hasattr(widget, name):
                raise AttributeError(f"{cls.__name__} {widget.objectName} has no property {name!r}")
            setattr(widget, name, value)
    for child in element.iter("widget"):
        if child is not element and _parent_widget(element, child) is element:
            _build(child, widget)
    return widget


def _parent_widget(root, target):
    """The nearest <widget> ancestor of ``target`` under ``root`` (layouts and items are skipped)."""
    parents = {c: p for p in root.iter() for c in p}
    node = parents.get(target)
    while node is not None and node.tag != "widget":
        node = parents.get(node)
    return node


def loadUI(path):
    """The top-level widget, with the file's signal/slot connections made (as QUiLoader makes them)."""
    root = ElementTree.parse(path).getroot()
    top = _build(root.find("widget"), None)
    byName = {w.objectName: w for w in [top, *top.findChildren()]}
    for connection in root.iter("connection"):
        sender, receiver = byName[connection.findtext("sender")], byName[connection.findtext("receiver")]
        signal = getattr(sender, connection.findtext("signal").split("(")[0])
        signal.connect(getattr(receiver, connection.findtext("slot").split("(")[0]))
    return top


def childWidgetVariables(widget):
    namespace = types.SimpleNamespace()
    for child in widget.findChildren():
        if child.objectName:
            setattr(namespace, child.objectName, child)
    return namespace
