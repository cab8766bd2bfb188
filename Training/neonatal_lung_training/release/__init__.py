"""Turning trained folders into bundled releases: version operations (weight averaging, reframing) and the
checked int8 network (``neonatal-lung-seg quantize``). Imports ``training``, ``evaluation`` and ``synthesis``.
"""
