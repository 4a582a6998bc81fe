"""Peak memory of a pipeline step: this process plus its worker processes.

:class:`PeakRSS` measures one step. The figure is the larger of

* the process's own high-water mark (``VmHWM`` on Linux, reset at the start of the step through
  ``/proc/self/clear_refs``, so it is exact for this process and this step), and
* the largest sum, over samples taken every ``interval`` seconds by a background thread, of the
  resident set sizes of this process and of every descendant (joblib/loky workers, a local Dask
  cluster's nanny and worker processes).

The figure is per process, not per step: while steps run side by side (the runner's threads, see
:func:`tidecast.pipeline.runner.run`), each one's figure is the peak of the whole process (and its
workers) during that step, which includes what the other steps held meanwhile. The measurements
that overlap share the one ``VmHWM``: a measurement that starts folds the mark reached so far into
the others before it resets it, so none of them loses its peak.

Workers on another machine (``executor.address``) are not measured. Pages shared between
processes count once per process, so the sum can exceed what the machine really holds. Without
``/proc`` (macOS, Windows) only the samples count, and a peak shorter than ``interval`` can be
missed.

>>> with PeakRSS() as peak:
...     data = bytearray(50 * 1024 * 1024)
>>> peak.mb >= 50
True
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

__all__ = ["PeakRSS", "rss_mb"]

_MB = 1024 * 1024
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_ACTIVE: set[PeakRSS] = set()  # measurements under way (steps side by side), guarded by _ACTIVE_LOCK
_ACTIVE_LOCK = threading.Lock()


def _hwm_bytes() -> int | None:
    """This process's peak resident set since start or the last reset (Linux), else None."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_hwm() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux >= 4.0); False where not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def rss_mb() -> float:
    """This process's current resident set, in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / _MB


class PeakRSS:
    """A context manager: ``peak.mb`` is the peak RSS (MiB) of this process and its descendants
    while the block ran (see the module docstring for what is and is not counted; blocks that
    overlap in several threads each measure the whole process)."""

    def __init__(self, interval: float = 0.2, children_every: int = 5) -> None:
        self.interval = interval
        self.children_every = max(1, children_every)
        self.peak_bytes = 0
        self.children_peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: Any = None
        self._children: list[Any] = []
        self._exact = False

    # -- sampling ----------------------------------------------------------------------------------
    def _sample(self, refresh: bool) -> None:
        import psutil

        try:
            own = self._process.memory_info().rss
        except psutil.Error:
            return
        if refresh:
            try:
                self._children = self._process.children(recursive=True)
            except psutil.Error:
                self._children = []
        others = 0
        for child in self._children:
            with contextlib.suppress(psutil.Error):
                others += child.memory_info().rss
        self.children_peak_bytes = max(self.children_peak_bytes, others)
        self.peak_bytes = max(self.peak_bytes, own + others)

    def _loop(self) -> None:
        count = 0
        while not self._stop.wait(self.interval):
            count += 1
            self._sample(refresh=count % self.children_every == 0)

    # -- the context manager -----------------------------------------------------------------------
    def __enter__(self) -> PeakRSS:
        import psutil

        self._process = psutil.Process()
        with _ACTIVE_LOCK:
            if _ACTIVE:  # the others keep the mark they reached before this reset
                hwm = _hwm_bytes()
                for other in _ACTIVE:
                    if other._exact and hwm is not None:
                        other.peak_bytes = max(other.peak_bytes, hwm)
            self._exact = _reset_hwm()
            _ACTIVE.add(self)
        self._sample(refresh=True)
        self._thread = threading.Thread(target=self._loop, name="tidecast-peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample(refresh=True)
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self)
            if self._exact:
                hwm = _hwm_bytes()
                if hwm is not None:
                    self.peak_bytes = max(self.peak_bytes, hwm)

    @property
    def mb(self) -> float:
        """The peak, in MiB (rounded to 0.1)."""
        return round(self.peak_bytes / _MB, 1)
