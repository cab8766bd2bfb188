"""The worker process that runs segmentation and click refinement outside Slicer's GUI process, and the
client that starts, feeds, polls and cancels it (the protocol is in docs/worker-protocol.md).

``client``, ``jobs``, ``refine_jobs``, ``protocol`` and ``process`` are plain NumPy, imported by the Slicer
process before torch exists; ``server`` is the process itself (``python -m NeonatalLungSegLib.worker.server``)
and imports the engine. Imports point one way: client -> refine_jobs -> jobs -> protocol. ``improve_process``
runs ``neonatal-lung-seg improve`` for the module the same way (own process group, polled log, cancel).
"""
