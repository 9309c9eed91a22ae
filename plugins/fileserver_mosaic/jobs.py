"""Background jobs for long mosaic work (``Prefer: respond-async``), visible to every process.

A job's state, stage, progress, result and error are a document of the
collection ``mosaic_jobs``, so any server process on the same database
answers ``GET /mosaic/jobs/<id>``. The process running a job writes it when
the stage changes and at least every ``BEAT`` seconds while it runs (a
heartbeat); a job whose heartbeat is older than ``STALE`` seconds belongs
to a process that died, and is reported failed, never "running" forever.
A clean shutdown (Ctrl-C, SIGTERM) stops its jobs at their next progress
step and records them failed at once, so no half-done work goes on after
"stopped". Finished jobs expire after ``KEEP_SECONDS``; the files they
produced stay in the store.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from typing import Any, Callable

from fileserver.documents import CollectionSpec, Documents
from fileserver.errors import BackendUnavailable, Error

log = logging.getLogger("fileserver.mosaic")
COLLECTION = CollectionSpec("mosaic_jobs")
KEEP_SECONDS = 3600.0
BEAT = 2.0  # seconds between heartbeats (at most; a third of the staleness)
STALE = 30.0  # default [plugin.mosaic] job_stale_after
#: how long a running job's document outlives its last heartbeat
RUNNING_TTL = 86400.0
#: seconds a shutdown waits for running jobs to reach their next progress step
STOP_WAIT = 10.0
STOPPED = "The server stopped before this job finished; start it again."


class Stopped(BackendUnavailable):
    """The server is shutting down: the job ends at its next progress step."""
FIELDS = ("kind", "state", "stage", "done", "total", "result", "error", "status", "created",
          "finished", "process", "beat")


@dataclass
class Job:
    kind: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "queued"  # queued -> running -> done | failed
    stage: str = ""
    done: int = 0
    total: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    status: int | None = None  # the HTTP status the synchronous request would have had
    created: float = field(default_factory=time.time)
    finished: float | None = None
    process: str = ""
    beat: float = field(default_factory=time.time)
    #: set by the runner: writes this job's document when the stage changes
    _changed: Callable[["Job"], None] | None = field(default=None, repr=False, compare=False)
    #: set by the runner: the server is stopping
    _stop: threading.Event | None = field(default=None, repr=False, compare=False)

    def progress(self, stage: str, done: int, total: int) -> None:
        if self._stop is not None and self._stop.is_set():
            raise Stopped(STOPPED)
        moved_on = stage != self.stage
        self.stage, self.done, self.total = stage, done, total
        if moved_on and self._changed is not None:
            self._changed(self)

    def body(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in FIELDS}

    @classmethod
    def from_body(cls, job_id: str, body: dict[str, Any]) -> "Job":
        return cls(id=job_id, **{k: body.get(k) for k in FIELDS if k in body})

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "state": self.state, "stage": self.stage,
                "done": self.done, "total": self.total, "result": self.result,
                "error": self.error, "status": self.status, "url": f"/mosaic/jobs/{self.id}"}


class Jobs:
    """A small thread pool running jobs; their state lives in ``documents``."""

    def __init__(self, documents: Documents, workers: int = 2, stale: float = STALE):
        self.documents, self.stale, self.beat = documents, stale, min(BEAT, stale / 3)
        documents.declare(COLLECTION.name, COLLECTION.indexed)
        self.process = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="mosaic-job")
        self._mine: dict[str, Job] = {}  # unfinished jobs of this process
        self._running: set[Future] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beater = threading.Thread(target=self._beat, name="mosaic-job-beat", daemon=True)
        self._beater.start()

    # -- writing ---------------------------------------------------------------------

    def _save(self, job: Job) -> None:
        job.beat = time.time()
        expires = (job.finished + KEEP_SECONDS) if job.finished else job.beat + RUNNING_TTL
        with self._lock:  # one writer per job: this process; no version races
            found = self.documents.get(COLLECTION.name, job.id)
            if found is None:
                self.documents.create(COLLECTION.name, job.id, job.body(), expires=expires)
            else:
                self.documents.replace(COLLECTION.name, job.id, job.body(), found.version,
                                       expires=expires)

    def _save_quietly(self, job: Job) -> None:
        try:
            self._save(job)
        except Error as exc:  # database away: the next beat tries again
            log.warning("mosaic job %s: could not record its state: %s", job.id, exc)

    def _beat(self) -> None:
        while not self._stop.wait(self.beat):
            with self._lock:
                running = list(self._mine.values())
            for job in running:
                self._save_quietly(job)
            if running:
                try:
                    self.documents.expire(COLLECTION.name)
                except Error:
                    pass

    def submit(self, kind: str, work: Callable[[Job], dict[str, Any]],
               cleanup: Callable[[], None] = lambda: None) -> Job:
        """Run ``work(job)`` in the background; its return value is the result."""
        job = Job(kind, process=self.process, _changed=self._save_quietly, _stop=self._stop)
        self._save(job)  # visible to every process before the answer says where to look
        with self._lock:
            self._mine[job.id] = job

        def run() -> None:
            job.state = "running"
            self._save_quietly(job)
            try:
                job.result = work(job)
                job.status = job.result.pop("_status", 201)
                job.state = "done"
            except Error as exc:  # refused input, backend down: the message says why
                job.error, job.status, job.state = str(exc), exc.status, "failed"
            except Exception as exc:
                log.exception("mosaic job %s failed", job.id)
                job.error = f"Internal error ({type(exc).__name__}); the server log has the details."
                job.status, job.state = 500, "failed"
            finally:
                job.finished = time.time()
                with self._lock:
                    self._mine.pop(job.id, None)
                self._save_quietly(job)
                cleanup()

        future = self._pool.submit(run)
        with self._lock:
            self._running.add(future)
        future.add_done_callback(lambda done: self._running.discard(done))
        return job

    # -- reading ---------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            mine = self._mine.get(job_id)
        if mine is not None:
            return mine  # the freshest state is the one in this process
        try:
            found = self.documents.get(COLLECTION.name, job_id)
        except ValueError:  # not a valid id: no such job
            return None
        if found is None:
            return None
        job = Job.from_body(job_id, found.body)
        silent = time.time() - (job.beat or 0)
        if job.state in ("queued", "running") and silent > self.stale:
            job.state, job.status = "failed", 503
            job.error = (f"The server process that ran this job stopped ({silent:.0f} s without "
                         "a sign of life); nothing more will happen. Start the job again.")
        return job

    def close(self) -> None:
        """Stop: queued jobs never start, running ones end at their next
        progress step (waiting at most ``STOP_WAIT``); all are recorded failed."""
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            running = set(self._running)
        wait_for(running, timeout=STOP_WAIT)
        with self._lock:
            left = list(self._mine.values())
        for job in left:  # queued (cancelled), or not at a progress step in time
            job.state, job.status, job.finished = "failed", Stopped.status, time.time()
            job.error = STOPPED
            self._save_quietly(job)
