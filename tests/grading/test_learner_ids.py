"""Learner ids have one spelling per person (the rule in lab.grading.learners), and untrusted text is
printed and stored with its control characters made visible (lab.fmt.plain_text)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import ConfigError
from lab.fmt import plain_text
from lab.grading.learners import normalize_learner

# the seven spellings issue 15 counted as seven learners
ALICES = ["alice", "Alice", "ALICE", "ａｌｉｃｅ", "alıce", "ALİCE", "  alice "]


def test_every_spelling_of_alice_is_one_learner():
    assert {normalize_learner(a) for a in ALICES} == {"alice"}


@pytest.mark.parametrize("name,why", [
    ("аlice", "mixes scripts"),                 # Cyrillic а (U+0430) in a Latin name
    ("alice\x1b[2J", "not allowed"),
    ("ali\u202ece", "not allowed"),              # a right-to-left override
    ("", "1-200 characters"),
    ("x" * 201, "1-200 characters"),
    ("bob\ud800", "not allowed"),
])
def test_look_alikes_and_control_characters_are_refused(name, why):
    with pytest.raises(ConfigError, match=why):
        normalize_learner(name)


def test_names_in_one_other_script_are_kept():
    assert normalize_learner("Алиса") == "алиса"
    assert normalize_learner("Ada Lovelace") == "ada lovelace"


@given(st.text(max_size=60))
def test_normalising_is_idempotent_or_refuses(name):
    try:
        once = normalize_learner(name)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    assert normalize_learner(once) == once


def test_plain_text_makes_escapes_visible_and_cuts():
    assert plain_text("\x1b[2J\x1b]0;t\x07ok\x9b") == "\\x1b[2J\\x1b]0;t\\x07ok\\x9b"
    assert plain_text("a\nb\ud800") == "a\\x0ab\\ud800"
    assert plain_text("x" * 50, 10) == "x" * 9 + "…"
    assert plain_text("plain café") == "plain café"


@given(st.text())
def test_plain_text_output_is_always_printable_and_encodable(text):
    out = plain_text(text, 200)
    assert len(out) <= 200 and isinstance(out.encode("utf-8"), bytes)   # no lone surrogate left
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in out)
