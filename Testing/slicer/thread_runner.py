"""The design the module had before issue 13, kept only to show in a test why it was replaced: the engine on
a Python thread of the GUI process (``thread_job.BackgroundJob``), with the job interface the
module's timer polls (``poll``, ``progress``, ``status``, ``done``, ``cancel``, ``result``, ``wait``)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


class ThreadJob:
    def __init__(self, job, request) -> None:
        self.job, self.request = job, request
        self.status = "Segmenting (thread)..."

    def poll(self) -> bool:
        return self.job.done

    progress = property(lambda self: self.job.progress)
    done = property(lambda self: self.job.done)
    cancelled = property(lambda self: self.job.cancelled)

    def cancel(self) -> None:
        self.job.cancel()

    def wait(self, timeout=None) -> bool:
        return self.job.wait(timeout)

    def result(self):
        return self.job.result()


class ThreadRunner:
    def __init__(self) -> None:
        self.segmenters: dict = {}
        self.jobs: list[ThreadJob] = []

    def start(self, request) -> ThreadJob:
        from NeonatalLungSegLib.inference.confidence import segment_with_confidence
        from NeonatalLungSegLib.inference.engine import Segmenter  # torch imported on the GUI thread, as before
        from thread_job import BackgroundJob

        array = np.array(request.array, dtype=np.float32)  # this design's own copy (the request holds MRML's memory)

        def work(progress, cancel):
            key = (str(request.modelFolder), request.device)
            if key not in self.segmenters:
                # the torch path the module had then: on a CPU with VNNI `auto` now runs the int8 network with
                # OpenVINO, which holds the GIL so little that this design passed the tick bound there (2026-12-01)
                from NeonatalLungSegLib.inference.acceleration import cpu_precision

                self.segmenters[key] = Segmenter.load(request.modelFolder, device=request.device,
                                                      precision=cpu_precision()[0])
            segmenter = self.segmenters[key]
            result, confidence = segment_with_confidence(segmenter, array, request.geometry,
                                                         options=request.options, flip=request.flipCheck,
                                                         progress=progress, cancel=cancel)
            config = segmenter.config
            return SimpleNamespace(labels=result.labels, probabilities=result.probabilities,
                                   volumes=result.volumes, label_names=result.label_names, confidence=confidence,
                                   model={"name": config.name, "version": config.version,
                                          "weights_sha256": config.weights_sha256, "device": str(segmenter.device)})

        job = ThreadJob(BackgroundJob(work, name="thread-based segmentation").start(), request)
        self.jobs.append(job)
        return job

    def close(self) -> None:
        for job in self.jobs:
            job.cancel()
            job.wait(600)  # the GIL is free while we wait here, so the thread reaches its next checkpoint
