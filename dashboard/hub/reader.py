"""What a topic asks of its readers (an open event stream, or a test's stand-in).

A topic feeds each subscribed reader the encoded events after the reader's
`cursor`, in fan-out passes (see memory.py). A reader is in one of two groups:

- caught up: `direct`, not `busy`, and at the group's cursor. The pass frames
  its payload once (TopicSettings.frame) and calls each member's `send` with it;
  nothing else of the reader is touched, and what the group was sent is counted
  for the group and added to the reader's counters when it leaves the group.
- behind: every other reader; the pass calls its `push`.

Positions (cursors, `upto`) are buffer positions: a sample's id, or a fraction
above one for a control event that followed it (Topic.append_control).
"""

from __future__ import annotations

from typing import Protocol


class Reader(Protocol):
    cursor: float  # the newest position it was sent (its own, while it is not caught up)
    busy: bool  # its last write is still waiting for the socket: skip it until feed()
    direct: bool  # it takes framed payloads through send()
    events_sent: int  # counters, kept by the reader while it is behind
    bytes_sent: int

    def send(self, data: bytes) -> int:
        """Write framed bytes now; the number taken (BlockingIOError: none; OSError: gone)."""
        ...

    def push(self, payload: bytes, upto: float, count: int) -> None:
        """Send `count` events (`payload`, unframed) and move the cursor to `upto`."""
        ...

    def stalled(self, data: bytes, taken: int) -> None:
        """send() took only `taken` bytes of `data`: keep the rest, wait until writable."""
        ...

    def lost(self) -> None:
        """send() found the peer gone."""
        ...

    def tick(self, now: float) -> None:
        """Called every TopicSettings.tick_every seconds: keep-alives, lifetimes."""
        ...

    def end(self) -> None:
        """The hub closes: say goodbye and go."""
        ...
