"""Large arrays go to the worker in pieces, one piece per GUI timer tick, so no tick blocks Slicer long.

Why: a request's voxels travel as an ``.npy`` file. Written in one call, a 512 x 512 x 300 int16 volume takes
60-100 ms of Slicer's main thread (measured, benchmarks/slicer_main_thread.py), a float32 copy first took
over two seconds. ``StagedJob`` writes the file into the worker client's session folder a few slices per
``poll()`` (a time budget per step, the voxels as MRML holds them: no copy, no cast), then sends the request
with that file (``WorkerClient.submit`` / ``start_refine`` / ``submit_click`` move it into place) and from
then on is that request's job. Until it is sent it answers as a job does: ``progress`` 0, ``status``,
``done``, ``cancel()`` (the file is removed; the worker is not touched, so it keeps its loaded model).
"""

import time

import numpy as np

STEP_SECONDS = 0.03  # writing time per poll: Slicer's main thread stays responsive between ticks
WRITE_BYTES = 16 * 2**20  # per write call


class StagedArray:
    """``array`` written to ``path`` as an .npy, slab by slab (whole slices along the first axis)."""

    def __init__(self, array, path, stepSeconds=STEP_SECONDS):
        self.array = np.asarray(array)
        if not self.array.flags.c_contiguous:
            self.array = np.ascontiguousarray(self.array)
        self.path = path
        self.stepSeconds = stepSeconds
        self.done = 0  # slices written
        sliceBytes = self.array[0].nbytes if self.array.ndim and self.array.shape[0] else 1
        self.slicesPerWrite = max(1, int(WRITE_BYTES // max(1, sliceBytes)))
        self._file = open(path, "wb")
        np.lib.format.write_array_header_1_0(self._file, np.lib.format.header_data_from_array_1_0(self.array))

    @property
    def finished(self):
        return self._file is None

    def step(self):
        """Write slices until the step's time is used; True once the whole array is in the file (closed)."""
        if self._file is None:
            return True
        started = time.perf_counter()
        total = self.array.shape[0] if self.array.ndim else 0
        while self.done < total:  # at least one write per step, more while the step's time lasts
            self.array[self.done:self.done + self.slicesPerWrite].tofile(self._file)
            self.done = min(total, self.done + self.slicesPerWrite)
            if time.perf_counter() - started >= self.stepSeconds:
                break
        if self.done >= total:
            self._file.close()
            self._file = None
            self.array = None  # the caller's memory is not held any longer
            return True
        return False

    def discard(self):
        if self._file is not None:
            self._file.close()
            self._file = None
        self.array = None
        try:
            self.path.unlink()
        except OSError:
            pass


class StagedJob:
    """A request whose input file is written over several ``poll()`` calls, then sent with ``send(path)``
    (which returns the worker's job); afterwards every call goes to that job. A failure while writing or
    sending ends the job with that error (``result()`` raises it)."""

    def __init__(self, client, array, send, status="Sending the volume to the AI process..."):
        self.client = self.worker = client
        self._writer = StagedArray(array, client.staging_path())
        self._send = send
        self._job = None
        self._error = None
        self._status = status
        self.request = None

    @property
    def job(self):
        return self._job

    @property
    def done(self):
        return self._job.done if self._job is not None else self._error is not None

    @property
    def cancelled(self):
        from NeonatalLungSegLib.errors import Cancelled

        return self._job.cancelled if self._job is not None else isinstance(self._error, Cancelled)

    @property
    def progress(self):
        return self._job.progress if self._job is not None else 0.0

    @property
    def status(self):
        return self._job.status if self._job is not None else self._status

    def poll(self):
        """One step: a piece of the file, or (once written) the request sent, or the job polled."""
        if self._job is None:
            if self._error is not None:
                return True
            try:
                if not self._writer.step():
                    return False
                self._job = self._send(self._writer.path)
            except Exception as error:  # a full disk, a stopped worker: the job fails with it, one message
                self._writer.discard()
                self._error = error
                return True
            self._job.request = self.request
            return self._job.done
        return self._job.poll()

    def wait(self, timeout=None, interval=0.05):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.poll():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if self._job is not None:
                time.sleep(interval)
        return True

    def cancel(self):
        if self._job is not None:
            self._job.cancel()
        elif self._error is None:
            from NeonatalLungSegLib.errors import Cancelled

            self._writer.discard()
            self._error = Cancelled("cancelled; nothing was changed")

    def result(self):
        if self._job is not None:
            return self._job.result()
        if self._error is not None:
            raise self._error
        raise RuntimeError("the job is still running")

    def __getattr__(self, name):  # id, events, geometry...: the sent job's
        job = self.__dict__.get("_job")
        if job is None:
            raise AttributeError(name)
        return getattr(job, name)
