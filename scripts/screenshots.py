"""Render every bundled dashboard in headless Chromium, light and dark, to PNG.

    .venv/bin/python scripts/screenshots.py [--config config.toml] [--out docs/screenshots]
                                            [--chromium /usr/bin/chromium] [--seconds 4]

The config is copied to a temporary directory (a fresh database there, a free
port), ten minutes of history are written for the graphs and numbers as if the
server had been running, then the real server starts, its sources run for a few
seconds, and each dashboard is shot at 1600x900 (a wall screen), plus one
phone-sized shot of the first dashboard.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import random
import shutil
import socket
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.async_api import async_playwright  # noqa: E402

from dashboard.config import load_config  # noqa: E402
from dashboard.service.server import Server  # noqa: E402
from dashboard.storage.schema import samples  # noqa: E402
from dashboard.storage.store import Store  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WALL = {"width": 1600, "height": 900}
PHONE = {"width": 390, "height": 844}
NOTICE = "Maintenance window tonight 22:00–23:00 UTC.\nDeploys are frozen until then."


def _walk(start: float, step: float, low: float | None, high: float | None, count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    values, value = [], start
    for i in range(count):
        value += rng.gauss(0, step) + step * 0.6 * math.sin(i / 9)
        if low is not None:
            value = max(low, value)
        if high is not None:
            value = min(high, value)
        values.append(value)
    return values


async def write_history(config) -> None:
    """Ten minutes of past samples for the widgets that draw a line, so the shots
    look like a dashboard that has been up for a while."""
    store = Store(config.storage.url)
    await store.open(migrate=True)
    now = datetime.now(UTC)
    rows = []
    for n, widget in enumerate(config.widgets.values()):
        # A graph with bounds, or a random walk: values whose range is known beforehand.
        walk = widget.source is not None and widget.source.kind == "random_walk"
        bounded = widget.view == "graph" and widget.min is not None and widget.max is not None
        if widget.view not in ("graph", "number") or not (walk or bounded):
            continue
        every = max(widget.every, 2.0)
        count = int(min(widget.history, 600) / every)
        start = widget.source.options.get("start", 40.0) if walk else (widget.min + widget.max) / 3
        step = abs(start) * 0.0006 if walk else (widget.max - widget.min) / 25
        low, high = (widget.min, widget.max) if widget.view == "graph" else (None, None)
        for i, value in enumerate(_walk(start, step, low, high, count, seed=n)):
            ts = now - timedelta(seconds=(count - i) * every)
            rows.append({"widget": widget.id, "ts": ts, "value": round(value, 4), "status": "ok", "message": None})
    rows.sort(key=lambda row: row["ts"])
    async with store.engine.begin() as conn:
        if rows:
            await conn.execute(samples.insert(), rows)
    await store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_config(source: Path, directory: Path, port: int) -> Path:
    """The config in `directory`, serving on `port`; a widget that checks this very
    server (`127.0.0.1:<port>` in a URL) follows it there."""
    text = source.read_text()
    old = load_config(source).server.port
    path = directory / "config.toml"
    path.write_text(text.replace(f"127.0.0.1:{old}/", f"127.0.0.1:{port}/"))
    return path


async def shoot(config_path: Path, port: int, out: Path, chromium: str, seconds: float) -> list[Path]:
    config = load_config(config_path)
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, port=port))
    await write_history(config)
    server = Server(config)
    await server.start()
    written = []
    try:
        for widget in config.widgets.values():
            if widget.view == "text" and widget.source is not None and widget.source.kind == "push":
                await server.runtime.recorder.record(widget.id, NOTICE)
        await asyncio.sleep(seconds)  # let the sources tick: this is a picture, not a test
        base = f"http://127.0.0.1:{server.port}"
        out.mkdir(parents=True, exist_ok=True)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            shots = [(d.id, scheme, WALL) for d in config.dashboards for scheme in ("light", "dark")]
            shots.append((config.dashboards[0].id, "phone", PHONE))
            for dashboard, scheme, viewport in shots:
                context = await browser.new_context(
                    viewport=viewport,
                    color_scheme="dark" if scheme == "dark" else "light",
                    device_scale_factor=1 if viewport is WALL else 2,
                )
                page = await context.new_page()
                await page.goto(f"{base}/d/{dashboard}")
                await page.wait_for_function(
                    "() => document.documentElement.dataset.connection === 'live'", timeout=10000
                )
                await page.wait_for_function("() => document.fonts.status === 'loaded'")
                path = out / f"{dashboard}-{scheme}.png"
                await page.screenshot(path=str(path), full_page=viewport is PHONE)
                written.append(path)
                await context.close()
            await browser.close()
    finally:
        await server.stop()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config.toml")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--seconds", type=float, default=4.0, help="how long the sources run before the shots")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config_path = copy_config(args.config, Path(tmp), port)
        written = asyncio.run(shoot(config_path, port, args.out.resolve(), args.chromium, args.seconds))
    for path in written:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
