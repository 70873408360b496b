"""Numbers for people: money, milliseconds, shares, counts and intervals, formatted one way everywhere.

Every table, chart label, report line, widget and self-check formats through these functions, so
"$13.70" and "95.2 %" read the same in the terminal, a notebook and an HTML report. `html_text`
also escapes dollar signs, which JupyterLab's Markdown renderer would otherwise typeset as math.
"""

from __future__ import annotations

import html
import math

MISSING = "-"


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def number(value, digits: int = 4) -> str:
    """A number with thousands separators and `digits` significant digits; '-' when missing."""
    if _missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    v = float(value)
    if v == 0:
        return "0"
    if v.is_integer() and abs(v) >= 1000:
        return f"{v:,.0f}"
    magnitude = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{v:,.{decimals}f}"


def count(value) -> str:
    """A whole number with thousands separators: 1,000,000."""
    return MISSING if _missing(value) else f"{int(round(float(value))):,}"


def usd(x) -> str:
    """Dollars with the precision their size needs: $1,234, $13.70, $0.0123."""
    if _missing(x):
        return MISSING
    a = abs(x)
    if a >= 1000:
        return f"${x:,.0f}"
    if a >= 1:
        return f"${x:,.2f}"
    if a == 0:
        return "$0"
    return f"${x:.3g}" if a >= 0.001 else f"${x:.2e}"


def usd_axis_decimals(span: float) -> int:
    """Decimals for a dollar axis whose largest tick is `span`: one precision for the whole axis."""
    return 0 if span >= 20 else 2 if span >= 0.2 else 4


def ms(x) -> str:
    """Milliseconds: 1,234 ms, 56.7 ms, 0.42 ms."""
    if _missing(x):
        return MISSING
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f} ms"
    if a >= 1:
        return f"{x:,.1f} ms"
    return f"{x:.2g} ms"


def pct(x, decimals: int = 1) -> str:
    """A percentage given in percent units: 38.1 %."""
    return MISSING if _missing(x) else f"{x:.{decimals}f} %"


def share(x, decimals: int = 1) -> str:
    """A share given as a fraction (0..1), shown in percent: 0.381 -> 38.1 %."""
    return MISSING if _missing(x) else f"{100 * x:.{decimals}f} %"


def interval(mean, half, fmt=number) -> str:
    """A mean and the half-width of its confidence interval: "12.3 ± 0.4"; the mean alone when unknown."""
    if _missing(half):
        return fmt(mean)
    return f"{fmt(mean)} ± {fmt(half)}"


def duration(seconds) -> str:
    """A span of time in the unit that reads best: 10 s, 12.5 min, 2.00 h, 3.5 days."""
    if _missing(seconds):
        return MISSING
    s = float(seconds)
    if abs(s) < 120:
        return f"{s:,.3g} s" if abs(s) < 10 else f"{s:,.0f} s"
    if abs(s) < 7200:
        return f"{s / 60:,.1f} min"
    if abs(s) < 3 * 86400:
        return f"{s / 3600:,.2f} h"
    return f"{s / 86400:,.1f} days"


def html_text(text: str) -> str:
    """Text for HTML or Markdown output: escaped, with `$` as an entity so no front end typesets it as math."""
    return html.escape(str(text)).replace("$", "&#36;")


def _visible(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _unsafe(ch: str) -> bool:
    """Control characters (C0, DEL, C1: ANSI/OSC escapes), bidi overrides and lone surrogates."""
    code = ord(ch)
    return (code < 0x20 or 0x7F <= code <= 0x9F or 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069
            or 0xD800 <= code <= 0xDFFF)


def plain_text(text, max_chars: int | None = None) -> str:
    """Untrusted text (a learner's name, an exception message) made safe to print or store.

    Every control character is written as a visible escape (ESC becomes the four characters
    `\\x1b`, a newline `\\x0a`), so no terminal sequence (colours, cursor moves, OSC titles,
    screen clears) and no lone surrogate reaches a terminal, a CSV cell or a database; with
    `max_chars` the result is cut to that length, ending in "…" when cut.
    """
    text = str(text)
    if any(_unsafe(c) for c in text):
        text = "".join(_visible(c) if _unsafe(c) else c for c in text)
    if max_chars is not None and len(text) > max_chars:
        text = text[:max(0, max_chars - 1)] + "…"
    return text


def html_markup(markup: str) -> str:
    """Markup built elsewhere (pandas' `to_html`, already escaped) with its `$` as entities, so none is typeset as math."""
    return str(markup).replace("$", "&#36;")
