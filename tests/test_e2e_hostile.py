"""A screen whose gene names and labels are hostile, in a real browser: nothing renders, nothing runs.

Builds the demo screen with six genes (and the perturbation labels naming them) renamed to a
Markdown image, a Markdown link, a ``<script>``, an ``<img onerror>``, a 300-character name and a
name with zero-width and right-to-left-override characters, plus a label that names no gene (dropped
by ``read_screen``, quoted in a warning), in a file whose own name is Markdown. It is loaded through
the Data page's path box, a tiny run is trained from the Train page, and the Effects, Jacobian and
Networks pages are opened on the hostile names (the pyvis iframe and its tooltip included).

Asserted on every page: no request leaves 127.0.0.1 / localhost (and none names ``evil``),
``window.__pwned`` is undefined in the page and every frame, no dialog opened, no exception box, and
the hostile text is on screen as literal characters (escaped once: never ``&lt;`` for the user).
Screenshots go to ``tests/artifacts/hostile_*.png``.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import numpy as np
import pytest
from helpers_app import ARTIFACTS, LOCAL_HOSTS, launch_chromium, needs_chromium

pytestmark = needs_chromium

MD_IMAGE = "![t](http://evil.example/x.png)"
MD_LINK = "[link](http://evil.example/)"
SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
LONG = "L" + "o" * 298 + "ng"
INVISIBLE = "zw\u200bsp\u202eRTL"
# demo genes that are perturbed alone and belong to no curated module: renamed with their labels
RENAME = {"APP": MD_IMAGE, "CACNA1A": MD_LINK, "CHGA": SCRIPT, "EIF1": IMG, "GABBR1": LONG,
          "HIF1A": INVISIBLE}
DROPPED = "**no gene**<b>x</b>![w](http://evil.example/w.png)"  # names no gene: dropped, quoted in a warning
FILE_NAME = "screen_**b**_[x](http:__evil.example_f.png).h5ad"

PWNED = "() => typeof window.__pwned"


def _hostile_screen(folder: Path) -> Path:
    """The demo screen with the hostile names (genes, labels and the planted network renamed together)."""
    import anndata as ad

    from lazynet_core.datasets import demo_path

    adata = ad.read_h5ad(demo_path())
    assert set(RENAME) <= set(adata.var_names)
    adata.var_names = [RENAME.get(g, g) for g in adata.var_names]
    labels = np.array([RENAME.get(x, x) for x in adata.obs["perturbation"].astype(str)], dtype=object)
    controls = np.flatnonzero(labels == "non-targeting")
    labels[controls[:8]] = DROPPED
    adata.obs["perturbation"] = labels
    truth = adata.uns["planted_network"]
    for key in ("source", "target"):
        truth[key] = np.array([RENAME.get(g, g) for g in truth[key]], dtype=object)
    path = folder / FILE_NAME
    adata.write_h5ad(path)
    return path


def _idle(page, timeout: float = 90_000) -> None:
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)


def _nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    _idle(page)


def _with_query(url: str, **params: str) -> str:
    parts = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(params)
    return urlunparse(parts._replace(query=urlencode(query)))


def _plotly_text(page) -> str:
    """The text of every plotly chart (titles, ticks, annotations, legends) as the browser has it."""
    return page.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot')].map(p => p.textContent).join('\\n')"
    )


def _bar_hover_text(page, *, charts: int = 2) -> str:
    """The hover text of every bar of the first ``charts`` plotly charts, as the browser shows it (a
    chart of more than 30 bars names them on hover only, ``plotting.MAX_BAR_LABELS``)."""
    seen = []
    for c in range(charts):
        chart = page.locator(".js-plotly-plot").nth(c)
        bars = chart.locator(".barlayer .point")
        for i in range(bars.count()):
            bars.nth(i).hover(force=True)
            page.wait_for_timeout(40)
            seen.append(chart.locator(".hoverlayer").text_content() or "")
    page.mouse.move(0, 0)
    return "\n".join(seen)


def _check(page, name: str) -> str:
    """Every page-level assertion, a screenshot, and the visible text of the page for more checks."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"hostile_{name}.png"))
    assert page.locator('[data-testid="stException"]').count() == 0, f"an exception is shown on {name}"
    text = page.locator("body").inner_text()
    assert "Traceback" not in text, f"a traceback is shown on {name}"
    for frame in page.frames:
        assert frame.evaluate(PWNED) == "undefined", f"script ran in a frame of {name} ({frame.url[:60]})"
    # rendered Markdown / HTML would leave no such literal characters behind, and nothing double-escaped
    assert "&lt;" not in text and "&amp;" not in text, f"double-escaped text on {name}"
    return text


def test_hostile_names_render_as_text_and_nothing_leaves_the_machine(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    screen = _hostile_screen(tmp_path)
    requests: list[str] = []
    dialogs: list[str] = []
    started = time.time()
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 1000})
            context.on("request", lambda req: requests.append(req.url))  # every page and frame
            page = context.new_page()

            def on_dialog(dialog) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            page.goto(server)
            _idle(page)

            # ---- Data: load the file through the path box --------------------------------------------
            _nav(page, "Data")
            page.get_by_label("Path to an .h5ad file on this machine").fill(str(screen))
            page.get_by_role("button", name="Load file").click()
            page.get_by_text("Overview ·").wait_for(timeout=60_000)
            _idle(page)
            page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
            text = _check(page, "1_data")
            assert DROPPED in text  # the dropped label, quoted literally in read_screen's warning
            assert "screen_**b**_[x](http:__evil.example_f.png)" in text  # the file's name, in the sidebar
            charts = _plotly_text(page) + _bar_hover_text(page)
            # tick labels (shortened to 24 characters) or, past 30 bars, the bars' hovers: literal text
            assert "<script>window._" in charts and "<img src=x onerr" in charts, charts[:500]
            assert "![t](http://evil" in charts and "zw\\u200bsp\\u202eRTL" in charts, charts[:500]

            # ---- Train: a tiny run -------------------------------------------------------------------
            _nav(page, "Train")
            page.get_by_role("spinbutton", name="Replicas").fill("1")
            page.get_by_role("spinbutton", name="Epochs").fill("2")
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("saved to").wait_for(timeout=120_000)
            _idle(page)
            _check(page, "2_train")

            # ---- Effects on the <script> perturbation (the URL names it) -----------------------------
            _nav(page, "Effects")
            page.get_by_text("LazyNet Δ-Pearson").first.wait_for(timeout=90_000)
            page.goto(_with_query(page.url, pert=SCRIPT))
            _idle(page)
            page.get_by_text("LazyNet Δ-Pearson").first.wait_for(timeout=90_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
            _idle(page)
            text = _check(page, "3_effects")
            chosen = page.get_by_test_id("stSelectbox").nth(0).locator("input").input_value()
            assert chosen.startswith(SCRIPT + " · "), chosen  # the selectbox shows plain text
            assert SCRIPT in _plotly_text(page)  # the scatter's and the in-silico chart's titles

            # ---- Jacobian over a typed list of the hostile genes -------------------------------------
            _nav(page, "Jacobian")
            page.get_by_text("typed list").click()
            _idle(page)
            box = page.get_by_label("Genes (comma, space or new line separated)")
            box.fill(" ".join([MD_IMAGE, MD_LINK, SCRIPT, LONG, INVISIBLE, "GPX4", "NOT<b>A</b>GENE"]))
            box.press("Control+Enter")
            _idle(page)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            text = _check(page, "4_jacobian")
            assert "NOT<b>A</b>GENE" in text  # the unknown name, quoted literally in the error
            heat = _plotly_text(page)
            for name in (MD_IMAGE, MD_LINK, SCRIPT):  # tick labels: literal, shortened to 28 characters
                assert name[:16] in heat, name
            assert "zw\\u200bsp\\u202eRTL" in heat and "\u202e" not in heat  # invisible characters shown
            assert LONG not in heat and "…" in heat  # the 300-character name is shortened on the axis

            # ---- Networks with hostile seeds (the URL names them) ------------------------------------
            _nav(page, "Networks")
            page.frame_locator("iframe").first.locator("#mynetwork canvas").wait_for(timeout=60_000)
            seeds = ",".join(["GPX4", SCRIPT, IMG, MD_IMAGE, INVISIBLE])
            page.goto(_with_query(page.url, seeds=seeds))
            _idle(page)
            frame_loc = page.frame_locator("iframe").first
            frame_loc.locator("#mynetwork canvas").wait_for(timeout=60_000)
            page.wait_for_timeout(800)
            text = _check(page, "5_networks")
            frame = next(f for f in page.frames if f.evaluate("() => typeof network") == "object")
            titles = frame.evaluate("() => nodes.get().map(n => n.title)")
            assert any(t.startswith(SCRIPT + " (seed") for t in titles), titles
            assert any(t.startswith(IMG + " (seed") for t in titles), titles
            assert not any("&lt;" in t or "\u202e" in t for t in titles)
            # hover the <img> seed: the tooltip shows the name as literal text (innerText), once
            point = frame.evaluate(
                "(id) => { const p = network.getPosition(id); return network.canvasToDOM(p); }", IMG
            )
            frame_loc.locator("#mynetwork canvas").scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            canvas = frame_loc.locator("#mynetwork canvas").bounding_box()
            page.mouse.move(canvas["x"] + point["x"] - 30, canvas["y"] + point["y"] - 30)
            page.mouse.move(canvas["x"] + point["x"], canvas["y"] + point["y"], steps=5)
            tip = frame_loc.locator("div.vis-tooltip")
            tip.wait_for(state="visible", timeout=5_000)
            tooltip = tip.inner_text()
            assert tooltip.startswith(IMG) and "&lt;" not in tooltip, tooltip
            page.screenshot(path=str(ARTIFACTS / "hostile_5_networks_tooltip.png"))
            assert frame.evaluate(PWNED) == "undefined"
        except Exception:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "hostile_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    elapsed = time.time() - started
    hosts = {urlparse(u).hostname for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")}
    assert hosts and hosts <= LOCAL_HOSTS, f"the page contacted other hosts: {sorted(hosts - LOCAL_HOSTS)}"
    # nothing fetched the names' targets, not even on 127.0.0.1 (``<img src=x>``, a relative image)
    fetched = [u for u in requests if "evil" in urlparse(u).path or urlparse(u).path.rsplit("/", 1)[-1] in
               ("x", "x.png", "w.png", "f.png")]
    assert not fetched, fetched
    assert not dialogs, dialogs
    print(f"hostile-names browser test: {elapsed:.0f} s in the browser, {len(requests)} requests")
