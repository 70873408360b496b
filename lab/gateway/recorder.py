"""The gateway's calls as a recorded run of the experiment store: one ledger for simulated and live traffic.

On start the recorder opens (or re-opens, by the config's `experiment` name) a recorded run in
the experiment store at the gateway's own database URL, so one database holds a class's
learners, spend, gateway ledger and experiments. A thread then copies settled rows from
`gateway_ledger` into the run's ledger chunks every `flush_rows` rows or `flush_s` seconds, and
once more on stop. Each copy is claim, append, mark: the claim fixes a chunk's rows and its
number in the run (one transaction in the gateway store), the append stores them under that
number (the store skips a number it already holds with the same rows), and the mark moves the
watermark past it. A crash between any two steps leaves the chunk pending; the next flush,
in this process or after a restart, finishes it without losing or doubling a row.
"""

from __future__ import annotations

import logging
import threading
import time

from lab.errors import ConfigError
from lab.gateway.config import GatewayConfig
from lab.gateway.store import Chunk, GatewayStore
from lab.store import Store

log = logging.getLogger("costlab.gateway")
RUN_NAME = "class gateway"
POLL_S = 0.25


class Recorder:
    """Copies a gateway store's ledger rows into recorded run `run_id` of `store`, in chunks."""

    def __init__(self, gateway_store: GatewayStore, store: Store, experiment: str, *, flush_rows: int = GatewayConfig.flush_rows,
                 flush_s: float = GatewayConfig.flush_s):
        self.gateway_store, self.store, self.experiment = gateway_store, store, experiment
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self.run_id = store.open_recorded(experiment, name=RUN_NAME)
        self._first_seq = store.chunks(self.run_id)      # chunks the run held before this process
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()                    # one flush at a time in this process

    @classmethod
    def for_config(cls, gateway_store: GatewayStore, config: GatewayConfig) -> Recorder | None:
        """The recorder a config asks for (its store's database, its experiment), or None when `experiment = ""`."""
        if not config.experiment:
            return None
        return cls(gateway_store, Store(gateway_store.url), config.experiment, flush_rows=config.flush_rows,
                   flush_s=config.flush_s)

    def flush(self) -> int:
        """Finish pending chunks, then copy the unclaimed rows; returns the rows appended or found stored."""
        with self._lock:
            copied = sum(self._push(chunk) for chunk in self.gateway_store.pending_chunks())
            while chunk := self.gateway_store.claim_chunk(self.run_id, self.flush_rows, self._first_seq):
                copied += self._push(chunk)
                if chunk.rows < self.flush_rows:    # all caught up: rows arriving meanwhile wait for the next flush
                    break
            return copied

    def _push(self, chunk: Chunk) -> int:
        rows = self.gateway_store.chunk_rows(chunk.chunk)
        try:
            self.store.append_ledger(chunk.run_id, rows, seq=chunk.seq)
        except ConfigError:
            if chunk.run_id != self.run_id or self.store.row(chunk.run_id)["status"] != "complete":
                raise
            # another gateway process on this database stopped and closed the run: it is ours again
            self.store.open_recorded(self.experiment, name=RUN_NAME)
            self.store.append_ledger(chunk.run_id, rows, seq=chunk.seq)
        self.gateway_store.flushed(chunk.chunk)
        return chunk.rows

    def start(self) -> Recorder:
        """Copy in a thread of its own, which also takes over SQLite's WAL checkpoints from the calls' commits."""
        self.gateway_store.hot.autocheckpoint = False
        self._thread = threading.Thread(target=self._loop, name="costlab-gateway-recorder", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(min(POLL_S, self.flush_s)):
            self.gateway_store.hot.checkpoint()
            if (time.monotonic() - last < self.flush_s
                    and self.gateway_store.unclaimed(self.flush_rows) < self.flush_rows):
                continue
            last = time.monotonic()
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception as exc:   # noqa: BLE001 — the rows stay in gateway_ledger; the next flush retries them
            log.warning("gateway: could not copy the ledger to run %s of the store: %s", self.run_id,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def stop(self) -> None:
        """Stop the thread, copy what is left and close the run (a restart re-opens it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._flush_logged()
        self.store.finish_recorded(self.run_id)
        self.store.close()
