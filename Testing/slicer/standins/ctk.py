"""Stand-in for the CTK widgets the module's .ui uses (Widget wiring tests only)."""

from __future__ import annotations

from qt import QWidget


class ctkCollapsibleButton(QWidget):  # noqa: N801 - CTK's spelling
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.text = ""
        self.collapsed = False


class ctkPathLineEdit(QWidget):  # noqa: N801
    SIGNALS = ("currentPathChanged",)
    Dirs, Files = 0x1, 0x2

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._path = ""
        self.filters = 0
        self.programmaticWrites = 0  # setCurrentPath calls while the user has the field focused
        self.typing = False

    @property
    def currentPath(self) -> str:
        return self._path

    @currentPath.setter
    def currentPath(self, path: str) -> None:
        if self.hasFocus() and not self.typing:
            self.programmaticWrites += 1  # the real widget moves the cursor to the end here
        if str(path) != self._path:
            self._path = str(path)
            self.currentPathChanged.emit(self._path)

    def type(self, text: str) -> None:
        """The user types in the focused field, ending with ``text``."""
        self.setFocus()
        self.typing = True
        try:
            self.currentPath = text
        finally:
            self.typing = False
