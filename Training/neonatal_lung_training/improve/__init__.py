"""Improving a model from a clinic's corrected cases: the product side of the correction loop.

``run.improve`` fine-tunes a parent model on a training folder's reviewed cases with rehearsal of what the
parent knew (synthetic cases of both generators mixed into every batch, ``anchors``), scores parent and
child on held-out corrected cases and on anchor sets, and decides with a rule a user can read
(``promotion``) whether the child becomes the default model or stays a candidate. ``command`` is
``neonatal-lung-seg improve``; the Slicer module runs the same command in a separate process. Imports
``synthesis``, ``evaluation``, ``training`` and ``release`` (the int8 network); nothing imports it but
``loop`` (the experiment).
"""
