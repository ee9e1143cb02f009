"""Text from data files, made safe to show: Markdown escaped, invisible characters made visible.

Labels, gene names and file names come from files a user did not write. Streamlit renders
``st.warning`` / ``st.error`` / ``st.markdown`` text as Markdown, so a perturbation label written as
``![t](http://host/x.png)`` would become an image fetched from that host. Every string from a data
file passes through :func:`escape_markdown` (or :func:`display_name`) before it is shown.
"""

from __future__ import annotations

import re
import unicodedata

# Characters with a meaning in CommonMark, GitHub-flavoured Markdown or Streamlit's own directives
# (``:red[...]``, ``:material/icon:``, ``$math$``); each is backslash-escaped.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=])")
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}


def visible(text: str) -> str:
    """Replace control, format (zero-width, bidi) and other invisible characters by ``\\u`` codes."""
    return "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch) in _INVISIBLE_CATEGORIES and ch not in "\n\t" else ch
        for ch in str(text)
    )


def escape_markdown(text: str) -> str:
    """Backslash-escape every Markdown-active character; newlines become spaces; nothing renders.

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
    return _MARKDOWN.sub(r"\\\1", flat)


def display_name(name: str, *, max_len: int = 60) -> str:
    """A label for display: invisible characters made visible, shortened in the middle with ``…``."""
    text = visible(str(name))
    if len(text) > max_len:
        keep = max_len - 1
        text = text[: keep - keep // 3] + "…" + text[len(text) - keep // 3 :]
    return text
