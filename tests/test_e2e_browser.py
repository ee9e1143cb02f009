"""One real-browser end-to-end test: Load demo -> Train -> Effects -> Jacobian -> Networks -> CSV.

Starts ``streamlit run app.py`` on a free port, drives Debian's ``/usr/bin/chromium`` through
Playwright (never ``playwright install``), and checks what AppTest cannot see: Plotly charts
rendered, the pyvis canvas inside its iframe, the CSV download, and that the page requested
nothing from any host but 127.0.0.1 / localhost. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian chromium (/usr/bin/chromium) is not installed; "
    "install it with `apt-get install -y chromium` (the CI script does).",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_health(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url}/_stcore/health did not answer in {timeout} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    runs = tmp_path_factory.mktemp("e2e_runs")
    env = {**os.environ, "LAZYNET_RUNS_DIR": str(runs), "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_health(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit finished the current script run."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)


def _nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    _idle(page)


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ignore = ARTIFACTS / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    # Streamlit scrolls inside its main container, so a tall viewport shows the whole page.
    page.set_viewport_size({"width": 1500, "height": 2400})
    page.wait_for_timeout(400)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.set_viewport_size({"width": 1500, "height": 1000})
    assert page.locator('[data-testid="stException"]').count() == 0, f"an exception is shown on {name}"


def test_full_flow_in_chromium(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    hosts: set[str] = set()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            context = browser.new_context(accept_downloads=True, viewport={"width": 1500, "height": 1000})
            page = context.new_page()
            page.on("request", lambda req: hosts.add(urlparse(req.url).hostname or req.url.split(":")[0]))
            page.goto(server)
            _idle(page)
            page.get_by_text("LazyNet learns").wait_for()
            _shot(page, "0_home")

            _nav(page, "Data")
            page.get_by_role("button", name="Load demo screen").click()
            page.get_by_text("Overview · demo").wait_for(timeout=60_000)
            _idle(page)
            page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
            assert page.locator(".js-plotly-plot").count() >= 2
            _shot(page, "1_data")

            _nav(page, "Train")
            page.get_by_role("spinbutton", name="Replicas").fill("2")
            page.get_by_role("spinbutton", name="Epochs").fill("3")
            page.get_by_role("button", name="Start training").click()
            page.locator('[data-testid="stProgress"]').first.wait_for(timeout=30_000)
            _shot(page, "2_train_running")
            page.get_by_text("saved to").wait_for(timeout=240_000)  # generous: CI machines may be loaded
            _idle(page)
            _shot(page, "2_train")

            _nav(page, "Effects")
            page.get_by_text("LazyNet Δ-Pearson").wait_for(timeout=60_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
            assert page.locator(".js-plotly-plot").count() >= 1
            assert page.locator(".js-plotly-plot .scatterlayer .point").count() > 50
            _shot(page, "3_effects")

            _nav(page, "Jacobian")
            page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
            _shot(page, "4_jacobian")

            _nav(page, "Networks")
            frame = page.frame_locator("iframe").first
            canvas = frame.locator("#mynetwork canvas")
            canvas.wait_for(state="visible", timeout=30_000)
            assert canvas.bounding_box()["height"] > 200
            page.wait_for_timeout(1500)  # let the physics settle for the screenshot
            _shot(page, "5_networks")

            with page.expect_download(timeout=30_000) as info:
                page.get_by_role("button", name="Download edges (CSV)").click()
            csv = Path(info.value.path()).read_text()
            header = csv.splitlines()[0]
            assert header.startswith("source,target,weight,sign,agreement,level,source_module,target_module")
            assert "evidence" in header and len(csv.splitlines()) > 2
        finally:
            browser.close()
    assert hosts and hosts <= LOCAL_HOSTS, f"the page contacted other hosts: {sorted(hosts - LOCAL_HOSTS)}"
