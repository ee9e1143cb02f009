"""Strings from data files never render as Markdown, HTML or invisible text."""

import re

import pytest

from lazynet_core.text import display_name, escape_markdown, visible

SPECIAL = set("\\`*[]<>$~")  # active anywhere in a line (block markers only at the start)

HOSTILE = [
    "![t](http://host/x.png)",
    "[click](http://host)",
    "<img src=x onerror=alert(1)>",
    "**bold** _it_ `code` ~~s~~",
    ":red[alarm] :material/warning:",
    "$x^2$",
    "# heading\n- item",
    "a\\b",
    "1. first",
    "> quote",
]


@pytest.mark.parametrize("label", HOSTILE)
def test_escaped_text_renders_literally(label):
    escaped = escape_markdown(label)
    assert "\n" not in escaped  # no block structure (headings, lists) can start
    bare = re.sub(r"\\.", "", escaped)  # drop every backslash-escaped pair
    assert not SPECIAL & set(bare), bare  # no Markdown-active character is left unescaped
    assert not re.match(r"\s*([#>+\-=]|\d+[.)])", bare), bare  # no block can start
    assert not re.search(r"(^|[^0-9A-Za-z])_|_($|[^0-9A-Za-z])", bare), bare  # no emphasis by underscores
    assert re.sub(r"\\(.)", r"\1", escaped) == label.replace("\n", " ")  # shown character for character


def test_invisible_characters_are_shown_and_long_names_shortened():
    assert visible("GPX4\u200b") == "GPX4\\u200b"
    assert visible("A\u202eB") == "A\\u202eB"
    short = display_name("X" * 500, max_len=40)
    assert len(short) == 40 and "…" in short
    assert display_name("GPX4") == "GPX4"


def test_readable_names_stay_readable():
    assert escape_markdown("NOT_A_GENE is not a gene (2 cells).") == "NOT_A_GENE is not a gene (2 cells)."


def test_app_messages_name_the_data_page_widgets_not_the_api():
    from lazynet_core.text import for_app

    message = ("No cells with a known control label; set the control label (control= / --control / "
               "'Control label' on the Data page). Pass modality= to override. Pass escapers='keep'.")
    shown = for_app(message)
    assert "control=" not in shown and "--control" not in shown and "modality=" not in shown
    assert "('Control label' on the Data page)" in shown
    assert "Choose 'Modality' on the Data page to override." in shown
    assert "Pass escapers='keep'." in shown  # an option the app does not offer stays as it is
    assert (for_app("Pass modality='CRISPRi' or 'CRISPRa'.")
            == "Choose 'Modality' on the Data page: 'CRISPRi' or 'CRISPRa'.")
