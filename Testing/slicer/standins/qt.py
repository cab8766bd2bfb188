"""Stand-in for PythonQt's ``qt`` module, for the Widget wiring tests only (never shipped).

Widgets are plain Python objects with the properties and signals the module uses; an attribute the real Qt
class lacks is not invented, so a typo in the module fails here as it would in Slicer.
"""

from __future__ import annotations


class Signal:
    """A Qt signal: ``connect``, ``disconnect``, ``emit`` (synchronous, like a direct connection); nothing is
    emitted while its object's signals are blocked (``QObject.blockSignals``)."""

    def __init__(self, owner=None) -> None:
        self._slots: list = []
        self.owner = owner

    def connect(self, slot) -> None:
        self._slots.append(slot)

    def disconnect(self, slot=None) -> None:
        self._slots = [] if slot is None else [s for s in self._slots if s != slot]

    def emit(self, *args) -> None:
        if getattr(self.owner, "_signalsBlocked", False):
            return
        for slot in list(self._slots):
            slot(*args)

    @property
    def connected(self) -> int:
        return len(self._slots)


class _Signals:
    """Gives each instance its own Signal objects for the names a class declares in ``SIGNALS``."""

    SIGNALS: tuple[str, ...] = ()

    def __init__(self) -> None:
        for name in self.SIGNALS:
            setattr(self, name, Signal(self))


class Qt:
    WaitCursor = 3
    Vertical = 2


class QMessageBox:
    Ok, Cancel, Question = 0x400, 0x400000, 4


class QObject(_Signals):
    def __init__(self, parent=None) -> None:
        super().__init__()
        self.objectName = ""
        self._properties: dict = {}
        self._parent = parent
        self._children: list = []
        if parent is not None:
            parent._children.append(self)

    def property(self, name):
        return self._properties.get(name)

    def setProperty(self, name, value) -> None:
        self._properties[name] = value

    def parent(self):
        return self._parent

    def setParent(self, parent) -> None:
        if self._parent is not None and self in self._parent._children:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None:
            parent._children.append(self)

    def blockSignals(self, block: bool) -> bool:
        """As Qt: returns the previous state."""
        previous = getattr(self, "_signalsBlocked", False)
        self._signalsBlocked = bool(block)
        return previous

    def connect(self, signature: str, slot) -> None:
        """PythonQt's string form, ``widget.connect("toggled(bool)", slot)``."""
        getattr(self, signature.split("(")[0]).connect(slot)

    def findChildren(self, cls=None):
        found = []
        for child in self._children:
            if cls is None or isinstance(child, cls):
                found.append(child)
            found += child.findChildren(cls)
        return found


class QWidget(QObject):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.enabled = True
        self.toolTip = ""
        self._visible = True
        self._focus = False

    def setFocus(self) -> None:
        self._focus = True

    def clearFocus(self) -> None:
        self._focus = False

    def hasFocus(self) -> bool:
        return self._focus

    def setVisible(self, visible: bool) -> None:
        self._visible = bool(visible)

    def isVisible(self) -> bool:
        return self._visible

    visible = property(isVisible, setVisible)


class QLayout(QObject):
    def addWidget(self, widget) -> None:
        self._children.append(widget)


class QVBoxLayout(QLayout):
    pass


class QLabel(QWidget):
    def __init__(self, parent=None) -> None:
        text, parent = (parent, None) if isinstance(parent, str) else ("", parent)  # QLabel("text") as in PythonQt
        super().__init__(parent)
        self.text = text
        self.wordWrap = False


class _Checkable(QWidget):
    """A ``checked`` property that, as Qt, signals only when the state changes (by a click or the program)."""

    def __init__(self, parent=None) -> None:
        text, parent = (parent, None) if isinstance(parent, str) else ("", parent)  # QCheckBox("text") as PythonQt
        super().__init__(parent)
        self.text = text
        self._checked = False

    @property
    def checked(self) -> bool:
        return self._checked

    @checked.setter
    def checked(self, value: bool) -> None:
        if bool(value) != self._checked:
            self._checked = bool(value)
            self._changed(self._checked)

    def _changed(self, checked: bool) -> None:
        self.toggled.emit(checked)


class QPushButton(_Checkable):
    SIGNALS = ("clicked", "toggled")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.checkable = False

    def click(self) -> None:
        if self.enabled:
            if self.checkable:
                self.checked = not self._checked
            self.clicked.emit()


class QRadioButton(_Checkable):
    """Auto-exclusive, as Qt's radio buttons: checking one unchecks the radio buttons beside it (same parent)."""

    SIGNALS = ("toggled", "clicked")

    def _changed(self, checked: bool) -> None:
        if checked and self._parent is not None:
            for sibling in self._parent._children:
                if isinstance(sibling, QRadioButton) and sibling is not self and sibling.checked:
                    sibling.checked = False
        self.toggled.emit(checked)

    def click(self) -> None:
        if self.enabled and not self._checked:
            self.checked = True
            self.clicked.emit()


class QFrame(QWidget):
    pass


class QIcon:
    def __init__(self, path: str = "") -> None:
        self.path = path

    def isNull(self) -> bool:
        return not self.path


class QCheckBox(_Checkable):
    SIGNALS = ("stateChanged", "toggled")

    def _changed(self, checked: bool) -> None:
        self.stateChanged.emit(2 if checked else 0)
        self.toggled.emit(checked)


class QSpinBox(QWidget):
    SIGNALS = ("valueChanged",)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.minimum, self.maximum, self._value = 0, 99, 0

    def setRange(self, minimum: int, maximum: int) -> None:
        self.minimum, self.maximum = minimum, maximum
        self.value = self._value

    def setMinimum(self, minimum: int) -> None:
        self.setRange(minimum, self.maximum)

    def setMaximum(self, maximum: int) -> None:
        self.setRange(self.minimum, maximum)

    @property
    def value(self) -> int:
        return self._value

    @value.setter
    def value(self, value: int) -> None:
        value = min(max(int(value), self.minimum), self.maximum)
        if value != self._value:
            self._value = value
            self.valueChanged.emit(value)


class QDoubleSpinBox(QWidget):
    """``minimum`` / ``maximum`` are properties here as in PythonQt (Slicer's float connector sets them so)."""

    SIGNALS = ("valueChanged",)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._minimum, self._maximum, self._value = 0.0, 99.99, 0.0
        self.decimals, self.singleStep, self.suffix = 2, 1.0, ""

    @property
    def minimum(self) -> float:
        return self._minimum

    @minimum.setter
    def minimum(self, value: float) -> None:
        self._minimum = float(value)
        self._maximum = max(self._maximum, self._minimum)
        self.value = self._value

    @property
    def maximum(self) -> float:
        return self._maximum

    @maximum.setter
    def maximum(self, value: float) -> None:
        self._maximum = float(value)
        self._minimum = min(self._minimum, self._maximum)
        self.value = self._value

    @property
    def value(self) -> float:
        return self._value

    @value.setter
    def value(self, value: float) -> None:
        value = round(min(max(float(value), self._minimum), self._maximum), self.decimals)  # as Qt: rounded
        if value != self._value:
            self._value = value
            self.valueChanged.emit(value)


class QLineEdit(QWidget):
    SIGNALS = ("textChanged",)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._text = ""
        self.placeholderText = ""

    @property
    def text(self) -> str:
        return self._text

    @text.setter
    def text(self, value: str) -> None:
        if str(value) != self._text:
            self._text = str(value)
            self.textChanged.emit(self._text)


class QComboBox(QWidget):
    SIGNALS = ("currentIndexChanged",)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._items: list[tuple[str, object]] = []
        self._index = -1

    def clear(self) -> None:
        self._items = []
        self.currentIndex = -1

    def addItem(self, text: str, data=None) -> None:
        self._items.append((str(text), data))
        if self._index < 0:
            self.currentIndex = 0

    @property
    def count(self) -> int:
        return len(self._items)

    def itemText(self, index: int) -> str:
        return self._items[index][0]

    def itemData(self, index: int):
        return self._items[index][1] if 0 <= index < len(self._items) else None

    @property
    def currentText(self) -> str:
        return self._items[self._index][0] if self._index >= 0 else ""

    @property
    def currentIndex(self) -> int:
        return self._index

    @currentIndex.setter
    def currentIndex(self, index: int) -> None:
        if index != self._index:
            self._index = index
            self.currentIndexChanged.emit(index)


class QProgressBar(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.value, self.minimum, self.maximum = 0, 0, 100


class QListWidgetItem:
    def __init__(self, text: str) -> None:
        self._text = text

    def text(self) -> str:
        return self._text


class QListWidget(QWidget):
    SIGNALS = ("currentRowChanged",)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._items: list[QListWidgetItem] = []
        self._row = -1

    def clear(self) -> None:
        self._items = []
        self.currentRow = -1

    def addItem(self, text: str) -> None:
        self._items.append(QListWidgetItem(text))

    @property
    def count(self) -> int:
        return len(self._items)

    def item(self, row: int) -> QListWidgetItem:
        return self._items[row]

    @property
    def currentRow(self) -> int:
        return self._row

    @currentRow.setter
    def currentRow(self, row: int) -> None:
        if row != self._row:
            self._row = row
            self.currentRowChanged.emit(row)


class QTimer(QObject):
    """A timer the test drives by hand: ``fire()`` runs one timeout, as the event loop would."""

    SIGNALS = ("timeout",)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.interval = 0
        self._active = False

    def setInterval(self, msec: int) -> None:
        self.interval = msec

    def start(self, msec: int | None = None) -> None:
        self._active = True

    def stop(self) -> None:
        self._active = False

    def isActive(self) -> bool:
        return self._active

    def fire(self) -> None:
        if self._active:
            self.timeout.emit()


class QSettings:
    """Application settings shared by every instance, like the real per-user store."""

    store: dict = {}

    def value(self, key: str, default=None):
        return self.store.get(key, default)

    def setValue(self, key: str, value) -> None:
        self.store[key] = value
