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


# The library's options as the app's Data page names them, for messages shown in the app.
_APP_LABELS = {
    "pert_key": "'Perturbation column'",
    "control": "'Control label'",
    "modality": "'Modality'",
    "layer": "'Counts'",
    "genes": "'Gene universe'",
}
_WHERE = " on the Data page"
_TRIPLE = re.compile(r"\((?:\w+= / )?--[\w-]+ / ('[^']+' on the Data page)\)")
_PASS = re.compile(r"\b([Pp])ass (\w+)=(\s*)")


def for_app(message: str) -> str:
    """A library message as the app shows it: options named by their Data-page widget, not their API.

    ``(control= / --control / 'Control label' on the Data page)`` becomes ``('Control label' on the
    Data page)`` and ``Pass modality= ...`` becomes ``Choose 'Modality' on the Data page: ...``.
    Options the app does not offer stay as they are.

    Parameters
    ----------
    message
        A ``ScreenError`` message or a ``read_screen`` warning.

    Returns
    -------
    str
        The message with the app's names (not escaped: escape it for Markdown as usual).
    """
    message = _TRIPLE.sub(r"(\1)", message)

    def choose(match: re.Match) -> str:
        label = _APP_LABELS.get(match.group(2))
        if label is None:
            return match.group(0)
        verb = "Choose" if match.group(1) == "P" else "choose"
        return f"{verb} {label}{_WHERE}: "

    return _PASS.sub(choose, message).replace(f"{_WHERE}: to override", f"{_WHERE} to override")
