"""Progress on stderr: a redrawn bar on a terminal, a plain line every few seconds otherwise (CI logs, files)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    def __init__(
        self,
        total: int | None,
        label: str,
        *,
        already: int = 0,
        stream: TextIO | None = None,
        interval: float | None = None,
        enabled: bool = True,
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.total = total
        self.label = label
        self.already = already  # finished in an earlier, resumed run: not counted in the rate
        self.done = 0
        self.failed = 0
        self.enabled = enabled
        self.interval = interval if interval is not None else (0.1 if self.tty else 10.0)
        self._start = time.monotonic()
        self._last = 0.0

    def update(self, failed: bool = False) -> None:
        self.done += 1
        self.failed += int(failed)
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._draw(final=False)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed
        finished = self.already + self.done
        parts = [f"{self.label}", f"{finished}/{self.total}" if self.total else f"{finished}"]
        if self.total:
            parts.append(f"{100 * finished / self.total:5.1f}%")
        parts.append(f"failed {self.failed}")
        parts.append(f"{rate:.1f}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {_fmt_duration((self.total - finished) / rate)}")
        parts.append(f"elapsed {_fmt_duration(elapsed)}")
        return "  ".join(parts)

    def _bar(self) -> str:
        if not self.total:
            return ""
        width = 24
        filled = int(width * (self.already + self.done) / self.total)
        return "[" + "#" * filled + "." * (width - filled) + "] "

    def _draw(self, final: bool) -> None:
        if not self.enabled:
            return
        if self.tty:
            end = "\n" if final else ""
            self.stream.write("\r\x1b[2K" + self._bar() + self.line() + end)
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        self._draw(final=True)
