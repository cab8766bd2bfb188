"""What the module needs from its Slicer: the version check, the first-use install of Python
packages (PyTorch through PyTorch Utils), and the self-test run by Reload and Test. Imports nothing of the
rest of the package.
"""
