"""One real-browser end-to-end test: Load demo -> Train -> Effects -> Jacobian -> Networks -> CSV.

Starts ``streamlit run app.py`` on a free port, drives Debian's ``/usr/bin/chromium`` through
Playwright (never ``playwright install``), and checks what AppTest cannot see: Plotly charts
rendered, the pyvis canvas inside its iframe, the CSV download, and that the page requested
nothing from any host but 127.0.0.1 / localhost. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
from helpers_app import ARTIFACTS, LOCAL_HOSTS, launch_chromium, needs_chromium

pytestmark = needs_chromium


def _idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit finished the current script run."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)


def _download(page, name: str, tries: int = 3) -> bytes:
    """Click a download button and return the file. A Streamlit rerun that lands while the browser
    fetches the file can cancel that one download (the media file is replaced); click again then."""
    from playwright.sync_api import Error as PlaywrightError

    for attempt in range(tries):
        _idle(page)
        try:
            with page.expect_download(timeout=30_000) as info:
                page.get_by_role("button", name=name).click()
            return Path(info.value.path()).read_bytes()
        except PlaywrightError as exc:
            if "canceled" not in str(exc) or attempt == tries - 1:
                raise
    raise AssertionError(f"download {name!r} did not complete")


def _nav(page, title: str) -> None:
    """Click a page in the sidebar (opening a collapsed sidebar first, and closing it again)."""
    link = page.locator('[data-testid="stSidebarNav"] a', has_text=title).first
    collapsed = page.get_by_test_id("stExpandSidebarButton").is_visible()
    if collapsed:
        page.get_by_test_id("stExpandSidebarButton").click()
        link.wait_for(state="visible")
    link.click()
    _idle(page)
    if collapsed and page.get_by_test_id("stSidebarCollapseButton").count():
        page.locator('[data-testid="stSidebar"]').hover()
        page.get_by_test_id("stSidebarCollapseButton").first.click()
        page.wait_for_timeout(400)


def _shot(page, name: str, *, tall: bool = True) -> None:
    """The view as seen (at the current viewport) and, if ``tall``, the whole page at that width."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    if tall:
        # Streamlit scrolls inside its main container, so a tall viewport shows the whole page.
        size = page.viewport_size
        page.set_viewport_size({"width": size["width"], "height": 2600})
        page.wait_for_timeout(400)
        page.screenshot(path=str(ARTIFACTS / f"{name}_full.png"))
        page.set_viewport_size(size)
    assert page.locator('[data-testid="stException"]').count() == 0, f"an exception is shown on {name}"


def _network_frame(page):
    frame = page.frame_locator("iframe").first
    frame.locator("#mynetwork canvas").wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(600)
    return frame


def _label_px(frame) -> float:
    """Smallest gene label in screen pixels at the default zoom (font size × the view's scale)."""
    return frame.locator("body").evaluate(
        "() => { const s = network.getScale(); const ns = nodes.get();"
        " return Math.min(...ns.map(n => n.font.size)) * s; }"
    )


def _no_clipped_labels(page) -> None:
    """No metric or widget label is cut off (ellipsis / overflow) or broken inside a word."""
    bad = page.evaluate(
        """() => {
          const out = [];
          for (const el of document.querySelectorAll(
              '[data-testid="stMetricLabel"] p, [data-testid="stWidgetLabel"] p')) {
            if (el.scrollWidth > el.clientWidth + 1) out.push('cut off: ' + el.innerText);
            const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
              for (const m of node.textContent.matchAll(/\\S+/g)) {
                const range = document.createRange();
                range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
                const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
                if (tops.size > 1) out.push('broken inside a word: ' + m[0]);
              }
            }
          }
          return out;
        }"""
    )
    assert not bad, bad


PAGES = ["Home", "Data", "Train", "Effects", "Jacobian", "Networks"]


def _tour(page, tag: str) -> None:
    """Visit every page and save screenshots named ``<n>_<page>_<tag>``."""
    for i, title in enumerate(PAGES):
        _nav(page, title)
        if title == "Effects":
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        if title == "Jacobian":
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        if title == "Networks":
            frame = _network_frame(page)
            assert _label_px(frame) >= 12, f"gene labels too small at default zoom ({tag})"
        if "present" in tag:
            _no_clipped_labels(page)
        _shot(page, f"{i}_{title.lower()}_{tag}")


def test_full_flow_in_chromium(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    hosts: set[str] = set()
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            context = browser.new_context(accept_downloads=True, viewport={"width": 1440, "height": 900})
            page = context.new_page()
            page.on("request", lambda req: hosts.add(urlparse(req.url).hostname or req.url.split(":")[0]))
            page.goto(server)
            _idle(page)
            page.get_by_text("LazyNet learns").wait_for()

            _nav(page, "Data")
            page.get_by_role("button", name="Load demo screen").click()
            page.get_by_text("Overview · demo").wait_for(timeout=60_000)
            _idle(page)

            # a long job: reload the page while it runs and find its progress, curves and Cancel again
            _nav(page, "Train")
            page.get_by_role("spinbutton", name="Replicas").fill("3")
            page.get_by_role("spinbutton", name="Epochs").fill("400")
            page.get_by_role("button", name="Start training").click()
            page.locator('[data-testid="stProgress"]').first.wait_for(timeout=30_000)
            page.wait_for_timeout(2500)
            assert "job=" in page.url
            page.reload()
            _idle(page)
            cancel = page.get_by_role("button", name="Cancel training")
            cancel.wait_for(timeout=30_000)
            page.locator('[data-testid="stProgress"]').first.wait_for(timeout=10_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=90_000)  # live loss curves
            _shot(page, "2_train_reloaded_while_running", tall=False)
            cancel.click()
            page.get_by_text("Training was cancelled").wait_for(timeout=30_000)
            _idle(page)

            page.get_by_role("spinbutton", name="Replicas").fill("2")
            page.get_by_role("spinbutton", name="Epochs").fill("3")
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("saved to").wait_for(timeout=240_000)  # generous: CI machines may be loaded
            _idle(page)

            _nav(page, "Effects")
            page.get_by_text("LazyNet Δ-Pearson").first.wait_for(timeout=60_000)
            assert page.locator(".js-plotly-plot .scatterlayer .point").count() > 50
            page.get_by_text("against the best baseline").first.wait_for(timeout=30_000)
            effects_url = page.url
            pert = page.get_by_test_id("stSelectbox").nth(0).inner_text()

            _nav(page, "Networks")
            frame = _network_frame(page)
            assert frame.locator("#lazynet-legend").count() == 1
            legend, canvas = frame.locator("#lazynet-legend").bounding_box(), frame.locator(
                "#mynetwork canvas").bounding_box()
            assert legend["y"] + legend["height"] <= canvas["y"] + 1  # the legend sits above the graph
            networks_url = page.url
            seeds = page.get_by_test_id("stMultiSelect").first.inner_text()
            downloads = (("Edges (CSV)", "csv"), ("GraphML", "graphml"), ("PNG", "png"), ("SVG", "svg"))
            for name, kind in downloads:
                data = _download(page, name)
                if kind == "csv":
                    header = data.decode().splitlines()[0]
                    assert header.startswith("source,target,weight,sign,agreement,sd,level")
                    assert "evidence" in header
                    assert b"model_only" not in data  # the default view follows supported edges only
                elif kind == "png":
                    assert data[:4] == b"\x89PNG"
                elif kind == "svg":
                    assert b"<svg" in data and b"</text>" in data
                else:
                    assert b'attr.name="evidence"' in data

            for width, height in ((1440, 900), (1920, 1080)):
                page.set_viewport_size({"width": width, "height": height})
                _tour(page, f"{width}x{height}")
            page.get_by_text("Presentation mode").click()
            _idle(page)
            for width, height in ((1440, 900), (1920, 1080)):
                page.set_viewport_size({"width": width, "height": height})
                _tour(page, f"{width}x{height}_present")

            # a copied URL opened in a fresh browser context shows the same view
            fresh = browser.new_context(viewport={"width": 1440, "height": 900})
            other = fresh.new_page()
            other.on("request", lambda req: hosts.add(urlparse(req.url).hostname or req.url.split(":")[0]))
            other.goto(effects_url)
            _idle(other)
            other.get_by_text("LazyNet Δ-Pearson").first.wait_for(timeout=60_000)
            assert other.get_by_test_id("stSelectbox").nth(0).inner_text() == pert
            _shot(other, "7_effects_from_copied_url", tall=False)
            other.goto(networks_url)
            _idle(other)
            _network_frame(other)
            assert other.get_by_test_id("stMultiSelect").first.inner_text() == seeds
            assert "demo" in other.locator('[data-testid="stSidebar"]').inner_text()
            _shot(other, "7_networks_from_copied_url", tall=False)
            fresh.close()
        finally:
            browser.close()
    assert hosts and hosts <= LOCAL_HOSTS, f"the page contacted other hosts: {sorted(hosts - LOCAL_HOSTS)}"
