"""Fan-out: per-dashboard ring buffers of encoded events, cursors, and passes that
feed every open stream; in one process (memory) or joined across processes
through Redis (redis_hub).

May import dashboard.core and dashboard.config; never storage (the Redis hub fills
gaps through a function it is handed), sources, web or service.
"""

from .memory import Hub, Topic, encode_sample

__all__ = ["Hub", "Topic", "encode_sample"]
