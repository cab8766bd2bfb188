"""Path fields bound to the parameter node by hand, not with ``connectGui``.

Slicer's connector binds ``ctkPathLineEdit`` to ``pathlib.Path`` only, which turns an empty field into "."
(``Path("")``), normalises what is being typed (a trailing "/" disappears) and, since the wrapper rewrites
every bound widget on every parameter change, moves the cursor while the user types. Here the parameter is
a plain string: the field writes exactly what it holds, and a node change is written to the field only
when it differs from the text and the user is not editing the field.
"""

import qt


def _isEditing(widget):
    """True while keyboard focus is in the widget or one of its children (the line edit inside it)."""
    if widget.hasFocus():
        return True
    try:
        focused = qt.QApplication.focusWidget()
    except AttributeError:
        return False
    return focused is not None and widget.isAncestorOf(focused)


class PathFieldBinding:
    def __init__(self, field, parameterName, parameterNode=None):
        self.field, self.name, self.node = field, parameterName, parameterNode
        self._writing = False
        field.currentPathChanged.connect(self._onFieldChanged)

    def setParameterNode(self, node):
        self.node = node
        self.refresh()

    def _onFieldChanged(self, text):
        if self.node is not None and not self._writing and str(getattr(self.node, self.name)) != str(text):
            setattr(self.node, self.name, str(text))

    def refresh(self):
        """Show the node's value, unless the field already shows it or is being edited."""
        if self.node is None:
            return
        value = str(getattr(self.node, self.name) or "")
        if self.field.currentPath == value or _isEditing(self.field):
            return
        self._writing = True
        try:
            self.field.currentPath = value
        finally:
            self._writing = False

    def disconnect(self):
        self.field.currentPathChanged.disconnect(self._onFieldChanged)
