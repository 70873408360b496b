"""lab.tokens counts exactly what tiktoken counts, offline, and refuses a corrupt file."""

from __future__ import annotations

import gzip
import hashlib
import socket

import pytest
import tiktoken
import tiktoken.registry

from lab import tokens
from lab.errors import ConfigError

URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"

TEXTS = [
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Grüße aus Köln — naïve café, 東京タワー, Привет мир, مرحبا بالعالم",
    "def f(x: int) -> int:\n    return [i**2 for i in range(x)]  # squares\n\tprint('done')\n",
    "emoji 🦊🎉👩‍👩‍👧‍👦 and flags 🇺🇸🇯🇵",
    "   leading spaces, trailing newlines\n\n\n",
    "",
    " ".join(f"word{i} 12345.678 ({i})" for i in range(3000)),
]

CORPORATE_JARGON = [  # the example from OpenAI's cookbook "How to count tokens with tiktoken"
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


def _refuse(*args, **kwargs):
    raise OSError("network access attempted in an offline test")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: everything here must be offline."""
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)


@pytest.fixture(scope="module")
def tiktoken_own(tmp_path_factory):
    """Encodings loaded by tiktoken itself, from a cache dir holding the shipped files."""
    cache_dir = tmp_path_factory.mktemp("tiktoken_cache")
    for name in tokens.SHIPPED_ENCODINGS:
        data = gzip.decompress((tokens._DATA_DIR / f"{name}.tiktoken.gz").read_bytes())
        key = hashlib.sha1(URL.format(name=name).encode()).hexdigest()
        (cache_dir / key).write_bytes(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(cache_dir))
        mp.setattr(tiktoken.registry, "ENCODINGS", {})  # force a fresh load through the cache dir
        mp.setattr(socket.socket, "connect", _refuse)
        yield {name: tiktoken.get_encoding(name) for name in tokens.SHIPPED_ENCODINGS}


@pytest.mark.parametrize("name", tokens.SHIPPED_ENCODINGS)
@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_counts_equal_tiktokens_own(tiktoken_own, name, text):
    ours = tokens.get_encoding(name)
    theirs = tiktoken_own[name]
    assert ours is not theirs
    assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)
    model = "gpt-4o" if name == "o200k_base" else "gpt-4"
    assert tokens.count_tokens(text, model) == len(theirs.encode(text))


@pytest.mark.parametrize("name", tokens.SHIPPED_ENCODINGS)
def test_encoding_matches_tiktoken_in_vocab_and_specials(tiktoken_own, name):
    ours, theirs = tokens.get_encoding(name), tiktoken_own[name]
    assert ours.n_vocab == theirs.n_vocab
    assert ours.special_tokens_set == theirs.special_tokens_set
    assert ours._pat_str == theirs._pat_str
    assert ours.encode("<|endoftext|>", allowed_special="all") == theirs.encode(
        "<|endoftext|>", allowed_special="all"
    )


def test_known_absolute_counts():
    assert tokens.get_encoding("o200k_base").encode("hello world") == [24912, 2375]
    assert tokens.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert tokens.count_tokens("hello world") == 2
    assert tokens.count_tokens("The quick brown fox jumps over the lazy dog.", "gpt-4o") == 10


def test_encodings_are_cached():
    assert tokens.get_encoding("o200k_base") is tokens.get_encoding("o200k_base")


@pytest.mark.parametrize(
    "model, name",
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("claude-sonnet-4-5", "o200k_base"),
        ("gemini-2.5-flash", "o200k_base"),
    ],
)
def test_encoding_name_for_model(model, name):
    assert tokens.encoding_name_for_model(model) == name


def test_tokenizer_note_says_exact_or_estimated():
    assert "exact" in tokens.tokenizer_note("gpt-4o-mini")
    assert "estimated" in tokens.tokenizer_note("claude-3-5-haiku")
    assert "estimated" in tokens.tokenizer_note("gemini-2.0-flash")


def test_unshipped_encoding_is_a_config_error():
    with pytest.raises(ConfigError, match="p50k_base"):
        tokens.encoding_name_for_model("text-davinci-003")
    with pytest.raises(ConfigError, match="r50k_base"):
        tokens.get_encoding("r50k_base")


@pytest.mark.parametrize("model, expected", [("gpt-4o", 124), ("gpt-4o-mini", 124), ("gpt-4", 129),
                                             ("gpt-3.5-turbo", 129)])
def test_openai_chat_count_matches_cookbook(model, expected):
    # The cookbook's num_tokens_from_messages() prints these, and the API agreed.
    assert tokens.count_messages(CORPORATE_JARGON, model) == expected


def test_anthropic_chat_estimate_reproduces_documented_example():
    user = [{"role": "user", "content": "Hello, Claude"}]
    assert tokens.count_messages(user, "claude-sonnet-4-5", system="You are a scientist") == 14
    as_message = [{"role": "system", "content": "You are a scientist"}, *user]
    assert tokens.count_messages(as_message, "claude-sonnet-4-5") == 14
    as_blocks = [{"role": "user", "content": [{"type": "text", "text": "Hello, Claude"}]}]
    assert tokens.count_messages(as_blocks, "claude-sonnet-4-5", system="You are a scientist") == 14


def test_google_chat_estimate():
    contents = [{"role": "user", "parts": [{"text": "The quick brown fox jumps over the lazy dog."}]}]
    assert tokens.count_messages(contents, "gemini-1.5-flash") == 11
    two = contents + [{"role": "model", "parts": [{"text": "The quick "}, {"text": "brown fox"}]}]
    assert tokens.count_messages(two, "gemini-1.5-flash") == 11 + 4 + 1


def test_provider_can_be_forced_and_bad_parts_are_errors():
    msg = [{"role": "user", "content": "hi"}]
    assert tokens.count_messages(msg, "gpt-4o", provider="anthropic") == 1 + 3 + 1
    with pytest.raises(ConfigError, match="provider"):
        tokens.count_messages(msg, "gpt-4o", provider="mistral")
    with pytest.raises(ConfigError, match="image"):
        tokens.count_messages([{"role": "user", "content": [{"type": "image", "source": {}}]}], "claude-3-haiku")


def test_hash_mismatch_names_the_file(tmp_path, monkeypatch):
    good = gzip.decompress((tokens._DATA_DIR / "o200k_base.tiktoken.gz").read_bytes())
    (tmp_path / "o200k_base.tiktoken.gz").write_bytes(gzip.compress(good.replace(b" 0\n", b" 7\n", 1)))
    monkeypatch.setattr(tokens, "_DATA_DIR", tmp_path)
    tokens.get_encoding.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"o200k_base\.tiktoken\.gz.*SHA-256"):
            tokens.get_encoding("o200k_base")
    finally:
        tokens.get_encoding.cache_clear()


def test_learners_tiktoken_cache_dir_is_untouched(monkeypatch, tmp_path):
    import os

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tokens.get_encoding.cache_clear()
    tokens.get_encoding("cl100k_base")
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path)
    assert list(tmp_path.iterdir()) == []
