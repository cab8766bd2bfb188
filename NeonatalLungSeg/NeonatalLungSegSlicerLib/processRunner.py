"""Segment in a separate process, started with Slicer's own Python and polled from the GUI timer.

Why not a thread: Slicer's main thread holds Python's GIL while Qt idles, so a Python worker thread in the
Slicer process runs only while the main thread runs Python (e.g. inside the 100 ms timer slot) and every
torch call waits for the next tick; a segmentation that takes seconds would take minutes (measured in
Testing/slicer/test_gil_host.py). The process is the library's worker (``NeonatalLungSegLib.worker.server``);
this file only decides which Python starts it and keeps one worker alive between runs so the model is
loaded once. After a cancel (which kills the worker's process tree) or a crash the next run starts a fresh
worker. Nothing here imports torch.
"""

import sys

import numpy as np

from NeonatalLungSegLib.worker.client import WorkerClient, find_python_slicer

from NeonatalLungSegSlicerLib import staging


def slicerPython():
    """PythonSlicer inside Slicer (same site-packages as the application), else this interpreter."""
    return find_python_slicer() or sys.executable


class ProcessRunner:
    """Starts segmentation requests on a persistent worker process; ``close()`` stops it.

    Click refinement ("AI correct") uses the same worker, so Segment and clicks never run two model processes.
    ``loader``, ``refineLoader`` and ``extraPaths`` exist for tests (a fake segmenter loaded inside the worker).
    """

    def __init__(self, python=None, loader=None, extraPaths=(), refineLoader=None):
        self.python = python
        self.loader = loader
        self.refineLoader = refineLoader
        self.extraPaths = list(extraPaths)
        self.client = None
        self.startedWorkers = 0

    def _client(self):
        # A worker accepts only the loaders named at its start: a test that swaps its fake starts a new worker.
        loaders = tuple(name for name in (self.loader, self.refineLoader) if name)
        if self.client is None or not self.client.usable or self.client.loaders != loaders:
            if self.client is not None:
                self.client.close(timeout=1)
            self.client = WorkerClient(python=self.python or slicerPython(), extra_paths=self.extraPaths,
                                       loaders=loaders)
            self.startedWorkers += 1
        return self.client

    def start(self, request):
        """Send ``request`` (pipeline.SegmentationRequest) to the worker; returns a job to poll at once. Its
        voxels are written to the worker's input file a piece per ``poll()`` (``staging.StagedJob``), then the
        request is sent; the request lets go of them now (``request.array`` None)."""
        client = self._client()

        def send(path):
            return client.submit(path, request.geometry, request.modelFolder, device=request.device,
                                 options=request.options, flip=request.flipCheck, loader=self.loader,
                                 source=request.volumeName)

        job = staging.StagedJob(client, request.array, send, "Sending the volume to the segmentation process...")
        request.array = None
        job.request = request
        return job

    def startRefine(self, array, geometry, modelFolder, device="auto", source="input volume", imageContrast=True):
        """Prepare a click-refinement session for one volume in the same worker (loads the refine model once);
        returns a job whose result names the session. A session lives as long as this worker: see
        ``sessionValid``. ``imageContrast`` is the session's switch for the image-contrast rule of remove clicks."""
        client = self._client()
        return staging.StagedJob(client, array, lambda path: client.start_refine(
            path, geometry, modelFolder, device=device, loader=self.refineLoader, source=source,
            image_contrast=imageContrast), "Sending the volume to the AI process...")

    def submitClick(self, session, labels, geometry, click):
        """One click on the current labels; returns a job whose result is a ``worker_refine.ClickResult`` (the
        labels are written a piece per ``poll()``, as the volume is)."""
        client = self._client()
        return staging.StagedJob(client, np.asarray(labels, dtype=np.uint8),
                                 lambda path: client.submit_click(session, path, geometry, click), "Correcting...")

    def sessionValid(self, worker):
        """A refine session made on ``worker`` can still be used (the worker was not cancelled or replaced)."""
        return worker is not None and worker is self.client and worker.usable

    def silentFor(self):
        """Seconds the worker has said nothing (no event, no heartbeat) while it has a request; 0 when idle."""
        return self.client.silent_for() if self.client is not None else 0.0

    @property
    def workerPid(self):
        return self.client.pid if self.client is not None else None

    def close(self, timeout=5.0):
        """Stop the worker (asks it to exit, then kills its process tree); waits for it."""
        if self.client is not None:
            self.client.close(timeout=timeout)
            self.client = None
