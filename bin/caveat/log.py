"""Logging and progress reporting shared by every step."""

from __future__ import annotations

import logging
import sys
import time

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: int | str = logging.INFO) -> None:
    """Configure the root ``caveat`` logger once (stderr, one line per record)."""
    logger = logging.getLogger("caveat")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    """Logger under the ``caveat`` namespace, e.g. ``get_logger("wasp_remap")``."""
    return logging.getLogger(name if name.startswith("caveat") else f"caveat.{name}")


def _fmt_rate(r: float) -> str:
    """Rates below 10/s keep decimals (samples/s, models/s), larger ones are grouped."""
    return f"{r:.2g}" if r < 10 else f"{r:,.0f}"


def _fmt_seconds(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


class Progress:
    """Periodic progress log line with rate and ETA (no terminal control codes,
    so it reads well in Nextflow's .command.log as well as a terminal).

    Examples
    --------
    >>> p = Progress(log, "reads", total=n)
    >>> for chunk in chunks:
    ...     p.update(len(chunk))
    >>> p.close()
    """

    def __init__(self, logger: logging.Logger, unit: str, total: int | None = None,
                 every_s: float = 10.0, label: str = ""):
        self.logger = logger
        self.unit = unit
        self.total = total
        self.every_s = every_s
        self.label = f"{label}: " if label else ""
        self.done = 0
        self.t0 = time.monotonic()
        self._last = self.t0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.logger.info(self._line(now))

    def _line(self, now: float) -> str:
        elapsed = max(now - self.t0, 1e-9)
        rate = self.done / elapsed
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            pct = 100.0 * self.done / self.total
            return (f"{self.label}{self.done:,}/{self.total:,} {self.unit} ({pct:.1f}%), "
                    f"{_fmt_rate(rate)} {self.unit}/s, ETA {_fmt_seconds(eta)}")
        return f"{self.label}{self.done:,} {self.unit}, {_fmt_rate(rate)} {self.unit}/s"

    def close(self) -> float:
        """Log the final line; return the elapsed seconds."""
        now = time.monotonic()
        elapsed = now - self.t0
        self.logger.info(self._line(now) + f", done in {_fmt_seconds(elapsed)}")
        return elapsed
