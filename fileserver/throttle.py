"""Login throttling that every server process on one database shares.

After ``free`` failed logins from one address within ``window`` seconds,
each further try must wait 1, 2, 4 ... (at most ``longest``) seconds after
the last failure, or it is answered 429 without the password being checked.
The failures are documents (collection ``login_failures``, one per address,
its id the sha256 of the address, so no address is stored in clear), so a
guesser cannot get five tries per process; a success forgets the address,
and a document expires ``window`` seconds after its last failure.
"""

from __future__ import annotations

import hashlib
import time

from .documents import CollectionSpec, Documents, retry_update

COLLECTION = CollectionSpec("login_failures")
SWEEP_EVERY = 60.0  # seconds between removals of expired documents


class Throttle:
    def __init__(self, documents: Documents, free: int = 5, window: float = 900,
                 longest: float = 300):
        self.documents, self.free, self.window, self.longest = documents, free, window, longest
        documents.declare(COLLECTION.name, COLLECTION.indexed)
        self._swept = 0.0

    @staticmethod
    def _id(address: str) -> str:
        return hashlib.sha256(address.encode("utf-8", "replace")).hexdigest()

    def _recent(self, times: list[float], now: float) -> list[float]:
        return [t for t in times if now - t < self.window]

    def wait(self, address: str) -> float:
        """Seconds this address must still wait before its next try (0: go)."""
        found = self.documents.get(COLLECTION.name, self._id(address))
        if found is None:
            return 0.0
        now = time.time()
        recent = self._recent(found.body.get("times", []), now)
        if len(recent) < self.free:
            return 0.0
        delay = min(2.0 ** (len(recent) - self.free), self.longest)
        return max(0.0, recent[-1] + delay - now)

    def failed(self, address: str) -> None:
        now = time.time()

        def add(body):
            times = self._recent((body or {}).get("times", []), now)[-100:]
            return {"times": [*times, now]}

        retry_update(self.documents, COLLECTION.name, self._id(address), add,
                     expires=now + self.window)
        if now - self._swept > SWEEP_EVERY:  # bound what a spray of addresses leaves behind
            self._swept = now
            self.documents.expire(COLLECTION.name, now)

    def succeeded(self, address: str) -> None:
        self.documents.delete(COLLECTION.name, self._id(address))
