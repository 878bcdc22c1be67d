"""Progress reporting without a UI dependency: the core calls a sink, the CLI draws it."""

from __future__ import annotations

from typing import Protocol


class ProgressSink(Protocol):
    def start(self, stage: str, total: int) -> None: ...

    def advance(self, count: int = 1) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    """A sink that ignores every call (the default in the core)."""

    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, count: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


def status(sink: ProgressSink, text: str) -> None:
    """A detail of the current stage for the sink to show beside its count (the cluster's tasks done / total);
    optional: sinks without a `status` method ignore it."""
    method = getattr(sink, "status", None)
    if method is not None:
        method(text)
