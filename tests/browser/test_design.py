"""The bundled dashboard as a person sees it, at a wall screen's 1600x900 and on a
phone: no empty quarter, no clipped numerals, readable small text, no tall empty
cards. Measured in Chromium from the laid-out page, in both themes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.browser.browsing import open_live

ROOT = Path(__file__).resolve().parents[2]
WALL = {"width": 1600, "height": 900}
PHONE = {"width": 390, "height": 844}

# WCAG 2.x relative luminance and contrast ratio of two computed CSS colours.
CONTRAST = """([fg, bg]) => {
  const rgb = (c) => {  // any CSS colour (rgb(), oklab() from color-mix...) as sRGB, through a canvas
    const ctx = Object.assign(document.createElement("canvas"), { width: 1, height: 1 }).getContext("2d");
    ctx.fillStyle = c;
    ctx.fillRect(0, 0, 1, 1);
    return [...ctx.getImageData(0, 0, 1, 1).data.slice(0, 3)];
  };
  const lum = (c) => rgb(c).map((v) => v / 255).map((v) => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


async def bundled(servers, tmp_path):
    directory = tmp_path / "bundled"
    directory.mkdir()
    shutil.copy(ROOT / "config.toml", directory / "config.toml")
    return await servers.start((directory / "config.toml").read_text(), directory=directory, port=0)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.gen_test(timeout=90)
async def test_the_wall_screen_fills_its_grid_and_shows_every_numeral_whole(servers, browser, tmp_path, scheme):
    server = await bundled(servers, tmp_path)
    page, log = await open_live(browser, server.url("/d/main"), viewport=WALL, color_scheme=scheme)
    # No empty cell: the widgets' areas add up to the grid's (4 columns x its rows).
    cells = await page.evaluate(
        """() => {
          const grid = document.querySelector("main.grid");
          const style = getComputedStyle(grid);
          const columns = style.gridTemplateColumns.split(" ").length, rows = style.gridTemplateRows.split(" ").length;
          const used = [...grid.children].reduce((sum, el) => {
            const s = getComputedStyle(el);
            const span = (v) => Number((v.match(/span (\\d+)/) || [0, 1])[1]);
            return sum + span(s.gridColumnStart) * span(s.gridRowStart);
          }, 0);
          return [columns * rows, used];
        }"""
    )
    assert cells[0] == cells[1], f"grid cells {cells[0]}, widgets cover {cells[1]}"
    # The page fits the screen: a wall screen does not scroll.
    assert await page.evaluate("document.documentElement.scrollHeight <= innerHeight + 1")
    # Numerals are whole: no box holding them is squeezed below a line of their size.
    clipped = await page.evaluate(
        "[...document.querySelectorAll('.big, .gauge-value')]"
        ".filter(el => el.getBoundingClientRect().height < 0.95 * parseFloat(getComputedStyle(el).fontSize))"
        ".map(el => el.closest('.widget').id)"
    )
    assert clipped == []
    # A gauge's numerals are about as large as a number's.
    sizes = await page.evaluate(
        "['#w-cpu .gauge-value', '#w-disk .big'].map(s => parseFloat(getComputedStyle(document.querySelector(s)).fontSize))"
    )
    assert sizes[0] >= 0.6 * sizes[1], sizes
    # The graph's last time label reaches the plot's right end.
    assert await page.evaluate(
        """() => {
          const svg = document.querySelector('#w-cpu_graph [data-role=chart]');
          const labels = [...svg.querySelectorAll('.x-label')];
          return labels.length > 1 && labels.at(-1).getBoundingClientRect().right >= svg.getBoundingClientRect().right - 2;
        }"""
    )
    # Small text reads at 4.5:1 or better against its card (WCAG AA).
    for selector in ("#w-disk .updated", "#w-cpu .gauge-scale", "#w-cpu_graph .x-label"):
        # Found and read in one evaluation: a live sample redraws a graph's labels, and an
        # element found in one call may be gone from the page by the next.
        colours = await page.evaluate(
            "selector => { const el = document.querySelector(selector); return ["
            "getComputedStyle(el).color === 'rgba(0, 0, 0, 0)' ? getComputedStyle(el).fill : "
            "(el instanceof SVGElement ? getComputedStyle(el).fill : getComputedStyle(el).color), "
            "getComputedStyle(el.closest('.widget')).backgroundColor]; }",
            selector,
        )
        assert await page.evaluate(CONTRAST, colours) >= 4.5, (selector, colours)
    assert log.problems() == []


@pytest.mark.gen_test(timeout=90)
async def test_on_a_phone_cards_are_as_tall_as_what_they_show(servers, browser, tmp_path):
    server = await bundled(servers, tmp_path)
    page, log = await open_live(browser, server.url("/d/main"), viewport=PHONE)
    # Cards that show something: one with nothing yet (a push widget nobody pushed to) keeps
    # a small height of its own. The process list's first reading comes a moment later.
    await page.wait_for_function("() => document.querySelector('#w-top').dataset.eventId !== '0'", timeout=20_000)
    # Each card: what it shows (head, body, message, footer) fills it but for its padding and gaps.
    slack = await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.widget')]
          .filter((el) => el.dataset.eventId !== '0').map((el) => {
          const box = el.getBoundingClientRect();
          // What shows something: not an empty change line, not a sparkline with no points yet.
          const shows = (p) => getComputedStyle(p).display !== 'none'
            && !(p.matches('.change') && !p.textContent.trim())
            && !(p.matches('.spark') && !p.querySelector('polyline')?.getAttribute('points'));
          const parts = [...el.querySelectorAll('.widget-head, .body > *, .message, .updated')].filter(shows);
          const style = getComputedStyle(el);
          const padding = parseFloat(style.paddingTop) + parseFloat(style.paddingBottom);
          const content = parts.reduce((sum, p) => sum + p.getBoundingClientRect().height, 0);
          return [el.id, Math.round(box.height - padding - content)];
        }))"""
    )
    empty = {widget: px for widget, px in slack.items() if px > 48}
    assert empty == {}, f"cards with more than 48 px of empty space: {empty}"
    assert log.problems() == []
