"""Served forecasts written to the prediction store off the request path.

A request puts its forecast (as arrays) on a bounded queue and returns; a writer calls
:meth:`PredictionStore.log_forecasts` (``source="serve"``). A full queue drops the forecast (counted),
and a failing or slow store never fails a request, nor slows it beyond the cost of a queue put. The
writer waits up to ``_LINGER_S`` for more forecasts and writes what it has in one transaction (each
forecast keeps its request id as its batch id), so under load a commit is paid once for several.

The writer is a child process by default (``python -m tidecast.serving.predlog``, fed through a
pipe): writing 288 rows through SQLAlchemy costs about as much CPU as the forecast itself, and in
a thread it would hold the GIL the requests need. It is a plain subprocess rather than a
``multiprocessing`` one so that it never re-imports the server's ``__main__``. An in-memory SQLite
URL (``sqlite://``) cannot be shared with another process, so it gets a thread.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from tidecast.serving.store import PredictionStore

log = logging.getLogger("tidecast.serving")

_BATCH = 64  # forecasts written per transaction at most, when a backlog builds up
_LINGER_S = 0.02  # how long the writer waits for more forecasts to write in the same transaction
_HEADER = struct.Struct("!Q")
_STOP = None


def _pack(forecast: pd.DataFrame) -> dict[str, np.ndarray]:
    """The forecast's columns as arrays (cheap to pickle)."""
    return {c: forecast[c].to_numpy() for c in forecast.columns}


def _write(store: Any, batch: list[tuple[Any, ...]], source: str) -> None:
    """Log ``batch`` in one transaction, each forecast under its own batch id (its request id, or a new one)."""
    store.log_forecasts(
        [
            (pd.DataFrame(packed), name, version, alias, source, batch_id or str(uuid.uuid4()))
            for packed, name, version, alias, batch_id in batch
        ]
    )


class PredictionLogger:
    """A bounded queue in front of a prediction store at ``url`` (see the module docstring).

    ``written``/``failed``/``dropped`` count forecasts; :meth:`flush` waits for the queue to drain.
    """

    def __init__(self, url: str, *, maxsize: int = 1000, source: str = "serve", process: bool | None = None) -> None:
        self.url = url
        self.source = source
        memory = url in ("sqlite://", "sqlite:///:memory:") or ":memory:" in url
        self.process = (not memory) if process is None else process
        self.submitted = 0
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self._threads: list[threading.Thread] = []
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._restarts = 0
        self._running = False

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._running:
                return
            if self.process:
                self._child = subprocess.Popen(
                    [sys.executable, "-m", "tidecast.serving.predlog", "--url", self.url, "--source", self.source],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    close_fds=True,
                )
                self._threads = [
                    threading.Thread(
                        target=self._feed, args=(self._child,), name="tidecast-prediction-feed", daemon=True
                    ),
                    threading.Thread(
                        target=self._acks, args=(self._child,), name="tidecast-prediction-acks", daemon=True
                    ),
                ]
            else:
                self._threads = [
                    threading.Thread(target=self._thread_main, name="tidecast-prediction-log", daemon=True)
                ]
            self._running = True
            for thread in self._threads:
                thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to ``timeout``), then end the writer."""
        if not self._running:
            return
        self.flush(timeout)
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=1.0)
        for thread in self._threads:
            thread.join(timeout=timeout)
        child = self._child
        if child is not None:
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.terminate()
                child.wait(timeout=5)
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self._child = None
        self._threads = []
        self._running = False

    def _alive(self) -> bool:
        if not self._running:
            return False
        if self._child is not None:
            return self._child.poll() is None
        return all(t.is_alive() for t in self._threads)

    # -- requests --------------------------------------------------------------------------------
    def submit(
        self,
        forecast: pd.DataFrame,
        *,
        model_name: str,
        model_version: str,
        alias: str | None,
        batch_id: str | None = None,
    ) -> bool:
        """Queue a forecast for the store; False (and counted as dropped) when the queue is full."""
        if not self._alive() and not self._revive():
            self.dropped += 1
            return False
        try:
            self._queue.put_nowait((_pack(forecast), model_name, str(model_version), alias, batch_id))
        except queue.Full:
            self.dropped += 1
            return False
        self.submitted += 1
        return True

    def _revive(self) -> bool:
        """Start a writer that is not running (at most 5 restarts: one that keeps dying is a bug to look at)."""
        if self._running and self._restarts >= 5:
            return False
        if self._running:
            self._restarts += 1
            log.warning("prediction store writer died; restarting it (attempt %d)", self._restarts)
            self._abandon()
        try:
            self.start()
        except Exception as exc:
            log.warning("prediction store writer cannot start: %s", exc)
            return False
        return True

    def _abandon(self) -> None:
        """Forget a dead writer; what it had not acknowledged counts as failed."""
        lost = self.pending() - self._queue.qsize()
        self._count_failed(max(0, lost))
        with self._lock:
            if self._child is not None and self._child.poll() is None:
                self._child.kill()
            self._child = None
            self._running = False

    # -- state -----------------------------------------------------------------------------------
    def _count_failed(self, count: int) -> None:
        with self._lock:
            self.failed += count

    def pending(self) -> int:
        return max(0, self.submitted - self.written - self.failed)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted forecast is written or failed (True), or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            if not self._alive():
                return False
            time.sleep(0.01)
        return not self.pending()

    # -- process mode: the parent's side ---------------------------------------------------------
    def _feed(self, child: subprocess.Popen[bytes]) -> None:
        """Pickle queued forecasts into the child's stdin (this thread, not requests, waits on the pipe)."""
        stdin = child.stdin
        assert stdin is not None
        while True:
            item = self._queue.get()
            if child.poll() is not None:  # a dead writer's feeder: hand the item to its successor
                with contextlib.suppress(queue.Full):
                    self._queue.put_nowait(item)
                return
            try:
                if item is _STOP:
                    stdin.close()
                    return
                payload = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
                stdin.write(_HEADER.pack(len(payload)) + payload)
                stdin.flush()
            except (OSError, ValueError):  # the child is gone
                self._count_failed(1)
                return

    def _acks(self, child: subprocess.Popen[bytes]) -> None:
        """Count what the child reports: ``done N`` or ``failed N <reason>`` lines."""
        stdout = child.stdout
        assert stdout is not None
        for raw in stdout:
            kind, _, rest = raw.decode("utf-8", "replace").strip().partition(" ")
            count, _, reason = rest.partition(" ")
            if kind == "done":
                self.written += int(count)
            elif kind == "failed":
                self._count_failed(int(count))
                log.warning("prediction store: %s served forecast(s) not logged (%s)", count, reason)

    # -- thread mode -----------------------------------------------------------------------------
    def _thread_main(self) -> None:
        store = None
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop = False
            while len(batch) < _BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            try:
                store = store or PredictionStore(self.url)
                _write(store, batch, self.source)
                self.written += len(batch)
            except Exception as exc:
                self._count_failed(len(batch))
                log.warning(
                    "prediction store: %d served forecast(s) not logged (%s: %s)", len(batch), type(exc).__name__, exc
                )
            if stop:
                return


# ------------------------------------------------------------------------------ the child process
def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_item(stream: BinaryIO) -> Any:
    header = _read_exact(stream, _HEADER.size)
    if header is None:
        return _STOP
    body = _read_exact(stream, _HEADER.unpack(header)[0])
    return _STOP if body is None else pickle.loads(body)


def _child_main(argv: list[str] | None = None) -> None:
    """``python -m tidecast.serving.predlog --url URL``: write forecasts read from stdin until it closes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the server, which drains and stops us
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--source", default="serve")
    args = parser.parse_args(argv)

    stdin, stdout = sys.stdin.buffer.raw, sys.stdout  # unbuffered: select() then tells what is waiting
    store = None
    stopping = False
    while True:
        item = _read_item(stdin)
        if item is _STOP:
            return
        batch = [item]
        # take what else arrives within _LINGER_S (stdin is a pipe: select says whether more is waiting):
        # under load a transaction then carries several forecasts, and its commit is paid once
        deadline = time.monotonic() + _LINGER_S
        while len(batch) < _BATCH and select.select([stdin], [], [], max(0.0, deadline - time.monotonic()))[0]:
            more = _read_item(stdin)
            if more is _STOP:
                stopping = True
                break
            batch.append(more)
        try:
            store = store or PredictionStore(args.url)
            _write(store, batch, args.source)
            status = f"done {len(batch)}\n"
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
            status = f"failed {len(batch)} {reason}\n"
        try:
            stdout.write(status)
            stdout.flush()
        except OSError:  # the server is gone (killed): what it sent is written, nobody reads the status
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - interpreter exit must not flush a dead pipe
            return
        if stopping:
            return


if __name__ == "__main__":
    _child_main()
