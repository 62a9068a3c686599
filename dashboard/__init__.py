"""A live dashboard server: tickers -> SQL store -> hub -> Server-Sent Events -> page.

The sub-packages are its layers, each importing only from those below it
(checked by import-linter, see pyproject.toml and docs/architecture.md):

    service     wiring and lifecycle: the command line, the server, processes, systemd, reload
    web | sources   the HTTP side (pages, streams, API) | where values come from, and the scheduler
    hub | storage   fan-out of encoded events to open streams | the SQL store, its writer and retention
    config      config.toml -> frozen dataclasses
    core        pure: the SSE wire format, samples, widget views, viewer rules
"""

__version__ = "0.1.0"
