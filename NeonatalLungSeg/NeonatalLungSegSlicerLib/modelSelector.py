"""The model selector: one combo box entry per model of the library's registry, one click to switch.

Entries come from ``NeonatalLungSegLib.models.registry.find_models`` (what `neonatal-lung-seg models` lists): the
bundled models and the registry's remembered folders. A folder chosen with "Other model folder..." is
remembered in that same registry once it has segmented something, so the command line lists it too; there
is no second list (no QSettings). The parameter node's
``modelFolder`` is the one source of truth: choosing an entry writes it, and any change of it (the path
field, a script, a loaded scene) selects the matching entry, or "Other" when it is not listed.
"""

from pathlib import Path

OTHER_MODEL = "Other model folder..."


class ModelSelector:
    def __init__(self, comboBox, pathLineEdit, onFolderChosen):
        self.comboBox = comboBox
        self.pathLineEdit = pathLineEdit
        self.onFolderChosen = onFolderChosen  # called with a pathlib.Path when the user picks an entry
        self._updating = False
        comboBox.currentIndexChanged.connect(self._onIndexChanged)

    def populate(self, currentFolder=None):
        from NeonatalLungSegLib.models import registry

        self._updating = True
        try:
            self.comboBox.clear()
            for entry in registry.find_models():
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
        """List a folder that has just been used (and is not listed yet) from now on, here and in the CLI."""
        from NeonatalLungSegLib.models import registry

        if self.indexOf(folder) >= 0:
            return False
        try:
            registry.remember(folder)
        except OSError as error:  # a read-only home: the folder is still listed for this session
            import logging

            logging.warning(f"NeonatalLungSeg: could not remember {folder} in {registry.registry_file()}: {error}")
        self.populate(folder)
        return True

    def _onIndexChanged(self, index):
        folder = self.comboBox.itemData(index)
        self.pathLineEdit.enabled = not folder
        if folder and not self._updating:
            self.onFolderChosen(Path(folder))
