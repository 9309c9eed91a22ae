"""Background jobs for long mosaic work (``Prefer: respond-async``).

Jobs live in this process's memory only: a restart forgets them (the files
they produced stay in the store). Finished jobs are kept for an hour, and at
most ``KEEP`` of them, so polling clients can read the outcome.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from fileserver.errors import StoreError

log = logging.getLogger("fileserver.mosaic")
KEEP = 200
KEEP_SECONDS = 3600.0


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

    def progress(self, stage: str, done: int, total: int) -> None:
        self.stage, self.done, self.total = stage, done, total

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "state": self.state, "stage": self.stage,
                "done": self.done, "total": self.total, "result": self.result,
                "error": self.error, "status": self.status, "url": f"/mosaic/jobs/{self.id}"}


class Jobs:
    """A small thread pool running jobs; ``get`` reads their state."""

    def __init__(self, workers: int = 2):
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="mosaic-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, kind: str, work: Callable[[Job], dict[str, Any]],
               cleanup: Callable[[], None] = lambda: None) -> Job:
        """Run ``work(job)`` in the background; its return value is the result."""
        job = Job(kind)
        with self._lock:
            self._prune()
            self._jobs[job.id] = job

        def run() -> None:
            job.state = "running"
            try:
                job.result = work(job)
                job.status = job.result.pop("_status", 201)
                job.state = "done"
            except StoreError as exc:  # refused input, backend down: the message says why
                job.error, job.status, job.state = str(exc), exc.status, "failed"
            except Exception as exc:
                log.exception("mosaic job %s failed", job.id)
                job.error = f"Internal error ({type(exc).__name__}); the server log has the details."
                job.status, job.state = 500, "failed"
            finally:
                job.finished = time.time()
                cleanup()

        self._pool.submit(run)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _prune(self) -> None:
        done = sorted((j for j in self._jobs.values() if j.finished), key=lambda j: j.finished)
        cutoff = time.time() - KEEP_SECONDS
        for job in done[:max(0, len(done) - KEEP)] + [j for j in done if j.finished < cutoff]:
            self._jobs.pop(job.id, None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
