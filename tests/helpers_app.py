"""Shared set-up of the app tests: chromium for the real-browser tests, and AppTest's Data page.

Not a test module (no ``test_`` prefix): imported as ``helpers_app`` from ``tests/`` (pytest puts the
folder of ``conftest.py`` on ``sys.path``). The browser tests' app server is the ``server`` fixture of
``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian chromium (/usr/bin/chromium) is not installed; "
    "install it with `apt-get install -y chromium` (the CI script does).",
)


def launch_chromium(p):
    """Debian's chromium through Playwright (never ``playwright install``), background traffic off."""
    return p.chromium.launch(
        executable_path=str(CHROMIUM),
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync"],
    )


def load_on_data_page(path: Path, runs: Path, monkeypatch):
    """AppTest of the app (runs in ``runs``, from the repo root) with ``path`` loaded through the Data
    page's path box; asserts no exception is shown and returns the AppTest."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LAZYNET_RUNS_DIR", str(runs))
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    at.switch_page("pages/1_Data.py")
    at.run()
    at.text_input[0].set_value(str(path))
    at.button(key="FormSubmitter:path_form-Load file").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at
