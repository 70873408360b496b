"""A calibrated twin written as a scenario file: tomli-w's TOML under a header of comments.

`tomllib` only reads; tomli-w writes what it reads back exactly. Two things are added here:
values a scenario cannot hold (None, NaN, infinity, non-string keys) are a ValueError rather
than silently written, and top-level arrays of tables are spelled `[[pipeline]]` /
`[[providers]]`, as every scenario file in `scenarios/` is, where tomli-w would inline short ones.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import tomli_w

COMMENT_WIDTH = 96


def scenario_toml(data: dict, header: str = "") -> str:
    """The TOML text of scenario dict `data`; `header` lines become `# ` comments at the top.

    `tomllib.loads(scenario_toml(d)) == d` for every dict a scenario file can hold.
    """
    data = _plain(data, "")
    if not isinstance(data, dict):
        raise ValueError(f"expected a dict at the top level, got {type(data).__name__}")
    tables = {k: v for k, v in data.items() if _is_table_array(v)}
    parts = [_comments(header), tomli_w.dumps({k: v for k, v in data.items() if k not in tables})]
    for key, items in tables.items():
        head = tomli_w.dumps({key: {}}).strip()          # "[key]", the key spelled as tomli-w spells it
        for item in items:
            # tomli-w writes {key: item} as a [key] table (its sub-tables as [key.sub]): under
            # [[key]] instead, the same lines make it the next item of the array
            text = tomli_w.dumps({key: item}).removeprefix(head + "\n")
            parts.append(f"[{head}]\n{text}")
    return "\n".join(p.strip("\n") + "\n" for p in parts if p.strip())


def _comments(header: str) -> str:
    lines = []
    for line in header.splitlines():
        indent = "  " if line.startswith("- ") else ""
        lines.extend(f"# {w}".rstrip() for w in textwrap.wrap(line, COMMENT_WIDTH, subsequent_indent=indent) or [""])
    return "\n".join(lines)


def _is_table_array(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _plain(value, where: str):
    """`value` with numpy scalars as Python numbers; a ValueError for what TOML (or a scenario) cannot hold."""
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ValueError(f"{where or 'top level'}: expected string keys, got {bad[0]!r}")
        return {k: _plain(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{k}]") for k, v in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: cannot write the non-finite number {value!r} (scenarios reject it)")
    if value is None or not isinstance(value, (str, bool, int, float)):
        raise ValueError(f"{where}: cannot write {type(value).__name__} value {value!r} as TOML"
                         + (" (leave the key out instead)" if value is None else ""))
    return value
