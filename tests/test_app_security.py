"""A data file cannot make the app render Markdown (an image from any host) through its labels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = "![t](http://host/x.png)"


def test_markdown_label_is_shown_escaped(tmp_path, monkeypatch):
    from lazynet_core.datasets import toy_screen

    monkeypatch.setenv("LAZYNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(ROOT)
    adata = toy_screen()
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    labels[:6] = HOSTILE  # a "target" that is no gene: read_screen drops it and names it in a warning
    adata.obs["perturbation"] = labels
    path = tmp_path / "hostile.h5ad"
    adata.write_h5ad(path)

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    at.switch_page("pages/1_Data.py")
    at.run()
    at.text_input[0].set_value(str(path))
    at.button(key="FormSubmitter:path_form-Load file").click().run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [w.value for w in at.warning] + [e.value for e in at.error]
    assert any("host/x" in text for text in shown), shown  # the label is named ...
    for text in shown:
        assert HOSTILE not in text and not re.search(r"(?<!\\)[\[\]]", text), text  # ... never live Markdown
