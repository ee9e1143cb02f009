"""A data file cannot make the app render Markdown (an image from any host) through its labels."""

from __future__ import annotations

import re

import pytest
from helpers_app import load_on_data_page

pytest.importorskip("streamlit")

HOSTILE = "![t](http://host/x.png)"


def test_markdown_label_is_shown_escaped(tmp_path, monkeypatch):
    from lazynet_core.datasets import toy_screen

    adata = toy_screen()
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    labels[:6] = HOSTILE  # a "target" that is no gene: read_screen drops it and names it in a warning
    adata.obs["perturbation"] = labels
    path = tmp_path / "hostile.h5ad"
    adata.write_h5ad(path)

    at = load_on_data_page(path, tmp_path / "runs", monkeypatch)
    shown = [w.value for w in at.warning] + [e.value for e in at.error]
    assert any("host/x" in text for text in shown), shown  # the label is named ...
    for text in shown:
        assert HOSTILE not in text and not re.search(r"(?<!\\)[\[\]]", text), text  # ... never live Markdown
