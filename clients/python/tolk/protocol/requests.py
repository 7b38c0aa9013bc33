"""The requests open on one connection, as a sans-I/O table (both ends use it).

The rules it keeps: an id is open at most once (`duplicate_id`); a request ends with exactly
one terminal frame (`complete` or `error`) per target, and a second one is dropped; a cancel
names an open request. It holds no sockets, tasks or clocks: the caller feeds it what it sends
or receives and does the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, TypeVar

from .errors import ProtocolError
from .frames import error
from .types import ErrorCode, ErrorFrame, is_terminal

V = TypeVar("V")


class Route(Enum):
    """What a frame means for the table."""

    OTHER = "other"  # not about an open request (pong, ready, a frame for a closed id)
    DELIVER = "deliver"  # a frame of an open request
    LAST = "last"  # that request's last terminal frame: every target has ended
    DROP = "drop"  # a second terminal frame for a target that has ended: never delivered


@dataclass(slots=True)
class Entry(Generic[V]):
    value: V
    open_targets: set[str]
    tagged: bool  # terminal frames carry `target` (a request with `targets`)
    cancel_requested: bool = False
    started: bool = False
    size: int = 0
    ended_targets: set[str] = field(default_factory=set)


def duplicate_id(rid: str) -> ProtocolError:
    """The refusal of a frame that would open a request with an id already open."""
    return ProtocolError(ErrorCode.DUPLICATE_ID, "a request with this id is in flight", rid)


class RequestTable(Generic[V]):
    """Open requests by id, each with a caller's value (a task, a queue …)."""

    def __init__(self) -> None:
        self._open: dict[str, Entry[V]] = {}

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, rid: object) -> bool:
        return rid in self._open

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._open))

    def items(self) -> list[tuple[str, Entry[V]]]:
        return list(self._open.items())

    def open(self, rid: str, value: V, targets: Iterable[str] = ("",),
             tagged: bool = False) -> Entry[V]:
        """Open `rid` (raises `duplicate_id` if it is open already)."""
        if rid in self._open:
            raise duplicate_id(rid)
        entry = Entry(value, set(targets), tagged)
        self._open[rid] = entry
        return entry

    def get(self, rid: object) -> Entry[V] | None:
        return self._open.get(rid) if isinstance(rid, str) else None

    def close(self, rid: str) -> Entry[V] | None:
        """Forget `rid` (its work is over, or the caller gave up on it)."""
        return self._open.pop(rid, None)

    def request_cancel(self, rid: str) -> Entry[V] | None:
        """A cancel for `rid`: its entry, or None if no such request is open."""
        entry = self._open.get(rid)
        if entry is not None:
            entry.cancel_requested = True
        return entry

    def observe(self, frame: Mapping[str, Any]) -> Route:
        """Account for one frame of the request it names (sent or received)."""
        entry = self.get(frame.get("id"))
        if entry is None:
            return Route.OTHER
        kind = frame.get("type")
        if kind == "start":
            entry.started = True
        if not is_terminal(frame):
            return Route.DELIVER
        target = str(frame.get("target", "")) if entry.tagged else ""
        if target in entry.ended_targets:
            return Route.DROP
        entry.ended_targets.add(target)
        if entry.tagged:
            entry.open_targets.discard(target)
        else:
            entry.open_targets.clear()
        return Route.DELIVER if entry.open_targets else Route.LAST

    def end_open(self, rid: str, code: ErrorCode, message: str) -> list[ErrorFrame]:
        """The terminal `error` frames that end every target of `rid` still open (marked
        ended, so that no other terminal frame follows)."""
        entry = self._open.get(rid)
        if entry is None:
            return []
        frames: list[ErrorFrame] = []
        for target in sorted(entry.open_targets):
            frame = error(code, message, rid)
            if entry.tagged:
                frame["target"] = target
            frames.append(frame)
            entry.ended_targets.add(target if entry.tagged else "")
        entry.open_targets.clear()
        return frames
