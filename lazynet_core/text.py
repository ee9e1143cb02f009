"""Text from data files, made safe to show: Markdown escaped, invisible characters made visible.

Labels, gene names and file names come from files a user did not write. Streamlit renders
``st.warning`` / ``st.error`` / ``st.markdown`` text as Markdown, so a perturbation label written as
``![t](http://host/x.png)`` would become an image fetched from that host. Every string from a data
file passes through :func:`escape_markdown` (or :func:`display_name`) before it is shown.
"""

from __future__ import annotations

import re
import unicodedata

# Characters that start Markdown constructs anywhere in a line: links and images ``[..](..)``,
# Streamlit directives ``:red[..]``, HTML and autolinks ``<..>``, code, emphasis, strikethrough and
# LaTeX (``$..$``); each is backslash-escaped. An underscore is escaped only at a word boundary
# (``NOT_A_GENE`` stays readable: intraword underscores never emphasise in CommonMark).
_MARKDOWN = re.compile(r"([\\`*\[\]<>$~])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# Constructs that only count at the start of a line (headings, quotes, lists, rules).
_LINE_START = re.compile(r"^(\s*)([#>+\-=])")
_ORDERED = re.compile(r"^(\s*\d+)([.)])")
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}


def visible(text: str) -> str:
    """Replace control, format (zero-width, bidi) and other invisible characters by ``\\u`` codes."""
    return "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch) in _INVISIBLE_CATEGORIES and ch not in "\n\t" else ch
        for ch in str(text)
    )


def escape_markdown(text: str) -> str:
    """Backslash-escape Markdown-active characters; newlines become spaces; nothing renders.

    Parameters
    ----------
    text
        Any string (an error message that quotes a label, a label itself).

    Returns
    -------
    str
        Text that Streamlit's Markdown shows literally, character for character.
    """
    flat = visible(str(text)).replace("\r", " ").replace("\n", " ")
    escaped = _MARKDOWN.sub(lambda m: "\\" + m.group(0), flat)
    escaped = _LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped)
    return _ORDERED.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped)


def display_name(name: str, *, max_len: int = 60) -> str:
    """A label for display: invisible characters made visible, shortened in the middle with ``…``."""
    text = visible(str(name))
    if len(text) > max_len:
        keep = max_len - 1
        text = text[: keep - keep // 3] + "…" + text[len(text) - keep // 3 :]
    return text
