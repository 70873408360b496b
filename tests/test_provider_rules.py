"""The rule book (lab/data/provider_rules.toml): every number sourced, one copy, models resolved.

What is checked, and against what:
- every fact has a source (a URL or genai-prices' own reference), the date it was read and the
  kind of evidence; every number in the book is inside such a fact; a fact with alternatives
  (sources that disagree) says which value was chosen and why;
- the minimums of issue 14's models are the ones the providers' pages state (Anthropic
  "Cache limitations", Sep-2026 version; Google's caching page, Oct-2026 version; OpenAI's
  prompt-caching guide), with the disagreeing versions kept as alternatives;
- the book agrees with genai-prices: an OpenAI model bills cache writes in the book exactly
  when genai-prices carries a cache-write price for it;
- no other file under lab/ keeps a caching minimum or block size;
- hostile model ids (hypothesis) always resolve to some family, with sane numbers.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab import provider_rules as pr
from lab.errors import PricingError
from lab.pricing import known_models, model_prices

EVIDENCE = {"primary-mirror", "secondary", "genai-prices", "inferred"}
LAB = Path(pr.__file__).resolve().parent


def test_every_fact_has_a_source_a_read_date_and_evidence():
    facts = list(pr.facts())
    assert len(facts) > 70
    for path, fact in facts:
        assert fact["source"].startswith(("https://", "genai-prices")), path
        assert isinstance(fact["read"], dt.date), path
        assert fact["evidence"] in EVIDENCE, path
        if fact.get("alternative"):
            assert fact.get("choice"), f"{path}: sources disagree but no choice is stated"
    assert isinstance(pr.as_of(), dt.date) and pr.book()["status"].startswith("adopted")


def _numbers_outside_facts(node, path=""):
    if isinstance(node, dict):
        if "value" in node:
            return []
        out = []
        for key, child in node.items():
            out += _numbers_outside_facts(child, f"{path}.{key}")
        return out
    if isinstance(node, list):
        return [p for k, child in enumerate(node) for p in _numbers_outside_facts(child, f"{path}[{k}]")]
    return [path] if isinstance(node, (int, float)) and not isinstance(node, bool) else []


def test_every_number_is_a_sourced_fact():
    assert _numbers_outside_facts(pr.book()) == [".schema_version"]


@pytest.mark.parametrize("provider,model,minimum,alternatives", [
    ("anthropic", "claude-haiku-4-5", 4096, []),
    ("anthropic", "claude-opus-4-6", 4096, []),
    ("anthropic", "claude-opus-4-5", 4096, []),
    ("anthropic", "claude-sonnet-4-6", 1024, [2048, 2048]),     # the Apr-2026 page and an observation
    ("anthropic", "claude-sonnet-4-5", 1024, []),
    ("anthropic", "claude-opus-4-1", 1024, []),
    ("anthropic", "claude-3-5-haiku-latest", 2048, []),
    ("anthropic", "claude-opus-4-7", 2048, [4096]),
    ("anthropic", "claude-opus-5", 512, []),
    ("openai", "gpt-4o-mini", 1024, [2048]),                     # the 2026-09-02 guide said 2,048
    ("openai", "gpt-5.6-terra", 1024, []),
    ("google", "gemini-2.5-flash", 2048, [1024]),
    ("google", "gemini-2.5-pro", 2048, [4096, 2048]),
    ("google", "gemini-3.1-pro-preview", 4096, []),
])
def test_minimums_follow_the_providers_pages(provider, model, minimum, alternatives):
    assert pr.cache_rules(provider, model).min_cacheable_tokens == minimum
    fact = pr.fact(provider, model, "min_cacheable_tokens")
    assert [a["value"] for a in fact.get("alternative", [])] == alternatives


def test_semantics_per_provider():
    sonnet = pr.cache_rules("anthropic", "claude-sonnet-4-5")
    assert (sonnet.increment_tokens, sonnet.max_breakpoints, sonnet.write_charged) == (0, 4, True)
    assert sonnet.ttl_s == {"5m": 300.0, "1h": 3600.0} and sonnet.write_multiplier == {"5m": 1.25, "1h": 2.0}
    old = pr.cache_rules("openai", "gpt-4o-mini")
    assert (old.increment_tokens, old.write_charged, old.ttl_s) == (128, False, {"in_memory": 300.0})
    assert "24h" in pr.cache_rules("openai", "gpt-4.1").ttl_s          # extended retention where listed
    new = pr.cache_rules("openai", "gpt-5.6-terra")
    assert (new.increment_tokens, new.write_charged, new.write_multiplier, new.ttl_s) == (0, True, {"30m": 1.25},
                                                                                         {"30m": 1800.0})
    assert pr.cache_rules("openai", "gpt-5.5").increment_tokens == 2048
    assert pr.cache_rules("google", "gemini-2.5-pro").storage_usd_per_mtok_hour == 4.5
    flash = pr.cache_rules("google", "gemini-3.8-flash")
    assert flash.storage_usd_per_mtok_hour == 0.5                   # through 2026-12-31 ...
    assert pr.cache_rules("google", "gemini-3.8-flash", dt.date(2027, 1, 1)).storage_usd_per_mtok_hour == 1.0
    assert not pr.cache_rules("google", "gemini-4-argon").explicit_caching
    assert not pr.cache_rules("anthropic", "claude-2.1").supports_caching
    assert pr.cache_rules("anthropic", "claude-nonesuch-9").fallback
    assert not pr.cache_rules("anthropic", "claude-haiku-4-5").fallback


def test_openai_write_billing_agrees_with_genai_prices():
    for model in known_models("openai"):
        try:
            prices = model_prices("openai", model)
        except PricingError:
            continue
        assert pr.cache_rules("openai", model).write_charged == (prices.cache_write is not None), model


def test_no_other_copy_of_a_caching_rule_under_lab():
    pattern = re.compile(r"(min_cacheable_tokens|cache_block_tokens|MIN_CACHE|CACHE_BLOCK|cache_storage_usd)\s*=")
    copies = [str(p.relative_to(LAB)) for p in LAB.rglob("*") if p.suffix in (".py", ".toml")
              and p.name not in ("provider_rules.py", "provider_rules.toml") and pattern.search(p.read_text())]
    assert copies == []


@given(st.text(max_size=60), st.sampled_from(pr.PROVIDERS))
def test_any_model_id_resolves_with_sane_rules(model, provider):
    rules = pr.cache_rules(provider, model)
    assert rules.min_cacheable_tokens >= 0 and rules.increment_tokens >= 0 and rules.max_breakpoints >= 1
    assert rules.ttl_s and all(v > 0 for v in rules.ttl_s.values())
    assert rules.ttl_for() > 0
    assert all(m >= 1 for m in rules.write_multiplier.values())


def test_unknown_provider_and_retention_are_errors():
    with pytest.raises(KeyError, match="no provider"):
        pr.cache_rules("mistral", "x")
    with pytest.raises(KeyError, match="24h"):
        pr.cache_rules("openai", "gpt-4o-mini").ttl_for("24h")
