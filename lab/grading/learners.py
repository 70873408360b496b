"""Learner ids: one spelling per person, so a daily limit cannot be bypassed by capitals or look-alikes.

The rule (README, "What the grader isolates"): an id is Unicode-normalised with NFKC (full-width
ａｌｉｃｅ becomes alice), case-folded (Alice, ALICE become alice), its accents and other combining
marks removed after canonical decomposition (ALİCE, alíce become alice), a few look-alike letters
that survive that mapped to the Latin letter they imitate (dotless ı, long ſ, kra ĸ), and runs of
spaces collapsed. What remains may hold letters of one script only (Latin, Cyrillic, Greek, ...),
digits, spaces and `. _ - @ +`; a mix of scripts (a Cyrillic а inside a Latin alice) is refused,
as is anything else (control characters, symbols), with one line saying why.
"""

from __future__ import annotations

import unicodedata

from lab.errors import ConfigError

MAX_CHARS = 200
PUNCTUATION = " ._-@+"
#: letters that NFKC + casefold + dropping marks leave as distinct look-alikes of a Latin letter
CONFUSABLES = {"ı": "i", "ĸ": "k", "ſ": "s", "ɡ": "g", "ɩ": "i", "ʟ": "l", "ᴀ": "a"}


def _script(ch: str) -> str:
    """The script a letter belongs to, from its Unicode name ("LATIN SMALL LETTER A" -> "LATIN")."""
    return unicodedata.name(ch, "UNKNOWN").split(" ")[0]


def normalize_learner(raw) -> str:
    """The canonical id of a learner (see the module docstring); ConfigError when it cannot be one."""
    text = unicodedata.normalize("NFKC", str(raw or "")).casefold()
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = unicodedata.normalize("NFKC", "".join(CONFUSABLES.get(c, c) for c in text))
    text = " ".join(text.split())
    shown = repr(str(raw))[:60]
    if not text or len(text) > MAX_CHARS:
        raise ConfigError(f"student: expected a name of 1-{MAX_CHARS} characters, got {shown}")
    bad = [c for c in text if not (c.isalpha() or c.isdigit() or c in PUNCTUATION)]
    if bad:
        raise ConfigError(f"student: {shown}: character {bad[0]!r} (U+{ord(bad[0]):04X}) is not allowed "
                          f"(letters of one script, digits, spaces and {PUNCTUATION.strip()})")
    scripts = sorted({_script(c) for c in text if c.isalpha()})
    if len(scripts) > 1:
        raise ConfigError(f"student: {shown} mixes scripts ({', '.join(scripts)}): look-alike letters are refused; "
                          "use one script")
    return text
