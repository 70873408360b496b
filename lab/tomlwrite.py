"""Write TOML: the small subset scenario files use, read back exactly by `tomllib`.

`tomllib` only reads. This emitter writes what a scenario dict holds: strings, booleans,
integers, finite floats, arrays of those, tables (as `[a.b]` sections or `{ inline }`
tables when short) and arrays of tables (`[[pipeline]]`). Short values stay on one line;
long arrays wrap, a few numbers per line. Anything else (dates, None, NaN) is a ValueError,
so a scenario never silently loses a field. `dumps(data)` round-trips: `tomllib.loads(dumps(d)) == d`.
"""

from __future__ import annotations

import json
import math
import re
import textwrap

INLINE_MAX_CHARS = 88
COMMENT_WIDTH = 96
WRAP_ITEMS_PER_LINE = 10
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps(data: dict, header: str = "") -> str:
    """The TOML text of `data`; `header` lines become `# ` comments at the top."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a dict at the top level, got {type(data).__name__}")
    lines = []
    for line in header.splitlines():
        indent = "  " if line.startswith("- ") else ""
        wrapped = textwrap.wrap(line, COMMENT_WIDTH, subsequent_indent=indent) or [""]
        lines.extend(f"# {w}".rstrip() for w in wrapped)
    if lines:
        lines.append("")
    _table_body(lines, (), data)
    text = "\n".join(lines).rstrip("\n") + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)


def _key(key: str) -> str:
    if not isinstance(key, str):
        raise ValueError(f"expected string keys, got {key!r}")
    return key if _BARE_KEY.match(key) else _string(key)


def _path(path: tuple[str, ...]) -> str:
    return ".".join(_key(k) for k in path)


def _string(text: str) -> str:
    # JSON's escapes (\" \\ \n \t \uXXXX ...) are TOML basic-string escapes; TOML also forbids raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _is_table(value) -> bool:
    return isinstance(value, dict)


def _is_table_array(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write the non-finite number {value!r} (scenarios reject it)")
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, str):
        return _string(value)
    raise ValueError(f"cannot write {type(value).__name__} value {value!r} as TOML")


def _inline(value) -> str:
    """A value on one line: scalar, array or inline table."""
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(k)} = {_inline(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if hasattr(value, "item"):  # numpy scalars
        return _inline(value.item())
    return _scalar(value)


def _value(value, indent: str = "") -> str:
    """A value for `key = value`: inline when short, else an array wrapped over lines."""
    text = _inline(value)
    if len(text) <= INLINE_MAX_CHARS or not isinstance(value, (list, tuple)):
        return text
    items = [_inline(v) for v in value]
    rows = [", ".join(items[i:i + WRAP_ITEMS_PER_LINE]) for i in range(0, len(items), WRAP_ITEMS_PER_LINE)]
    return "[\n" + "".join(f"{indent}    {row},\n" for row in rows) + f"{indent}]"


def _fits_inline(value) -> bool:
    return len(_inline(value)) <= INLINE_MAX_CHARS


def _table_body(lines: list[str], path: tuple[str, ...], table: dict) -> None:
    """Keys of one table: plain and short values first, then sub-tables and arrays of tables."""
    deferred = []
    for key, value in table.items():
        if value is None:
            raise ValueError(f"{_path(path + (key,))}: cannot write None (leave the key out instead)")
        big_table = _is_table(value) and not _fits_inline(value)
        big_array = _is_table_array(value) and (not path or not _fits_inline(value))
        if big_table or big_array:
            deferred.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in deferred:
        sub = path + (key,)
        if _is_table(value):
            # a table holding only sub-tables needs no header of its own: theirs create it
            only_tables = all(_is_table(v) and not _fits_inline(v) for v in value.values())
            if not (value and only_tables):
                lines.extend(["", f"[{_path(sub)}]"])
            _table_body(lines, sub, value)
        else:
            for item in value:
                lines.extend(["", f"[[{_path(sub)}]]"])
                _table_body(lines, sub, item)
