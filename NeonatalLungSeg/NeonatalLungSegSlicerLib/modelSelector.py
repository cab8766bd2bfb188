"""The model selector: one combo box entry per model of the library's registry, one click to switch.

Entries come from ``NeonatalLungSegLib.registry.find_models`` (what `neonatal-lung-seg models` lists): the
bundled models, folders remembered here (a folder chosen with "Other model folder..." is remembered once it
has segmented something) and folders remembered from the command line. The parameter node's
``modelFolder`` is the one source of truth: choosing an entry writes it, and any change of it (the path
field, a script, a loaded scene) selects the matching entry, or "Other" when it is not listed.
"""

from pathlib import Path

import qt

OTHER_MODEL = "Other model folder..."
SETTINGS_MODEL_FOLDERS = "NeonatalLungSeg/ModelFolders"


class ModelSelector:
    def __init__(self, comboBox, pathLineEdit, onFolderChosen):
        self.comboBox = comboBox
        self.pathLineEdit = pathLineEdit
        self.onFolderChosen = onFolderChosen  # called with a pathlib.Path when the user picks an entry
        self._updating = False
        comboBox.currentIndexChanged.connect(self._onIndexChanged)

    def rememberedFolders(self):
        value = qt.QSettings().value(SETTINGS_MODEL_FOLDERS, []) or []
        return [value] if isinstance(value, str) else [str(v) for v in value]

    def populate(self, currentFolder=None):
        from NeonatalLungSegLib import registry

        self._updating = True
        try:
            self.comboBox.clear()
            for entry in registry.find_models(self.rememberedFolders()):
                if entry.usable:
                    self.comboBox.addItem(entry.label, str(entry.folder))
            self.comboBox.addItem(OTHER_MODEL, "")
        finally:
            self._updating = False
        if currentFolder is not None:
            self.show(currentFolder)

    def indexOf(self, folder):
        """The entry whose folder is ``folder`` (compared as resolved paths), or -1."""
        try:
            wanted = Path(str(folder)).resolve()
        except (OSError, ValueError):
            return -1
        for index in range(self.comboBox.count):
            data = self.comboBox.itemData(index)
            if data and Path(data).resolve() == wanted:
                return index
        return -1

    def show(self, folder):
        """Select ``folder``'s entry without writing back to the parameter node."""
        index = self.indexOf(folder)
        index = self.comboBox.count - 1 if index < 0 else index
        self._updating = True
        try:
            self.comboBox.currentIndex = index
        finally:
            self._updating = False
        self.pathLineEdit.enabled = not self.comboBox.itemData(index)

    def remember(self, folder):
        """List a folder that has just been used (and is not listed yet) from now on."""
        if self.indexOf(folder) >= 0:
            return False
        qt.QSettings().setValue(SETTINGS_MODEL_FOLDERS, [*self.rememberedFolders(), str(folder)])
        self.populate(folder)
        return True

    def _onIndexChanged(self, index):
        folder = self.comboBox.itemData(index)
        self.pathLineEdit.enabled = not folder
        if folder and not self._updating:
            self.onFolderChosen(Path(folder))
