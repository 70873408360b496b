"""KPI designer: a name, a formula over ledger columns, a unit and warning/critical thresholds.

Formulas are parsed by a small tokenizer and recursive-descent parser here and evaluated
on numpy arrays; user text is never handed to Python's `eval`, so a formula can reach
ledger columns and the functions below and nothing else. A bad formula raises `KPIError`
naming the offending token and its column (1-based) in the formula.

Grammar (lowest precedence first)::

    formula    := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum_expr (("==" | "!=" | "<" | "<=" | ">" | ">=") sum_expr)?
    sum_expr   := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | atom
    atom       := NUMBER | STRING | COLUMN | NAME "(" args ")" | "(" or_expr ")"
    args       := [or_expr ("where" or_expr)? ("," NUMBER)?]

Aggregates turn per-request values into one number: `sum`, `mean` (`avg`), `min`, `max`,
`median`, `p50`, `p90`, `p95`, `p99`, `percentile(x, q)`, `count()` (rows), `count(cond)`
(rows where cond holds), `share(cond)` (`rate`; the fraction where it holds), `distinct(x)`.
Any aggregate takes `where cond` to look at a subset: `p95(latency_ms where outcome == "ok")`.
Per-request expressions combine columns with `+ - * /`, comparisons, `and`/`or`/`not`, and
`abs(x)`. The whole formula must be a number built from aggregates and constants:

    1000 * sum(cost_usd) / count()                  cost per 1k requests
    count(outcome == "cache_hit") / count()         cache hit rate
    1 - sum(cost_usd) / sum(baseline_cost_usd)      share of the bill saved
"""

from __future__ import annotations

import difflib
import html
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lab.analysis.frame import as_ledger, bucket_index, n_buckets_for, nice_bucket_s
from lab.errors import CostlabError
from lab.ledger import CONTRACT_COLUMNS, OUTCOMES


class KPIError(CostlabError):
    """A formula that cannot be parsed or evaluated; `column` is 1-based in the formula."""

    def __init__(self, formula: str, column: int, message: str):
        self.formula, self.column, self.reason = formula, column, message
        super().__init__(f"formula {formula!r}, column {column}: {message}")

    def pointer(self) -> str:
        """The formula with a caret under the offending token (for notebooks and logs)."""
        return f"{self.formula}\n{' ' * (self.column - 1)}^ {self.reason}"


# --------------------------------------------------------------------------- columns

#: ledger columns a formula may use, with their kind: "num", "bool" or "text"
COLUMN_KINDS = {
    **{c: "num" for c in CONTRACT_COLUMNS},
    "request_id": "num", "cache_write_tokens": "num", "quality": "num",
    **{c: "text" for c in ("tenant", "feature", "provider", "model", "outcome", "priority")},
}
#: text columns whose values are fixed, so a misspelt value is caught at parse time
KNOWN_VALUES = {"outcome": OUTCOMES, "priority": ("high", "normal", "low")}

AGGREGATES = {"sum", "mean", "avg", "min", "max", "median", "p50", "p90", "p95", "p99", "percentile",
              "count", "share", "rate", "distinct"}
ROW_FUNCTIONS = {"abs"}
KEYWORDS = {"and", "or", "not", "where"}


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Token:
    kind: str        # "num", "str", "name", "op", "end"
    text: str
    col: int         # 1-based column of the first character
    value: object = None


_OPS = ("==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "(", ")", ",")


def tokenize(formula: str) -> list[Token]:
    """Split a formula into tokens; an unknown character is an error at its column."""
    tokens, i, n = [], 0, len(formula)
    while i < n:
        ch = formula[i]
        if ch.isspace():
            i += 1
            continue
        col = i + 1
        if ch.isdigit() or (ch == "." and i + 1 < n and formula[i + 1].isdigit()):
            j = i
            while j < n and (formula[j].isdigit() or formula[j] == "."):
                j += 1
            if j < n and formula[j] in "eE":
                k = j + 1
                if k < n and formula[k] in "+-":
                    k += 1
                if k < n and formula[k].isdigit():
                    j = k
                    while j < n and formula[j].isdigit():
                        j += 1
            text = formula[i:j]
            try:
                value = float(text)
            except ValueError:
                raise KPIError(formula, col, f"malformed number {text!r}") from None
            if j < n and (formula[j].isalpha() or formula[j] == "_"):
                raise KPIError(formula, j + 1, f"unexpected {formula[j]!r} right after the number {text}")
            tokens.append(Token("num", text, col, value))
            i = j
        elif ch.isalpha() or ch == "_":
            j = i
            while j < n and (formula[j].isalnum() or formula[j] == "_"):
                j += 1
            tokens.append(Token("name", formula[i:j], col))
            i = j
        elif ch in "'\"":
            j = formula.find(ch, i + 1)
            if j < 0:
                raise KPIError(formula, col, "string is never closed")
            tokens.append(Token("str", formula[i:j + 1], col, formula[i + 1:j]))
            i = j + 1
        else:
            for op in _OPS:
                if formula.startswith(op, i):
                    tokens.append(Token("op", op, col))
                    i += len(op)
                    break
            else:
                hint = " (use '==' to compare)" if ch == "=" else ""
                hint = hint or (" (use 'and', 'or', 'not')" if ch in "&|!" else "")
                raise KPIError(formula, col, f"unexpected character {ch!r}{hint}")
    tokens.append(Token("end", "", n + 1))
    return tokens


# --------------------------------------------------------------------------- syntax tree
# Each node knows its `scope` ("row": one value per request, "scalar": one per bucket) and
# `kind` ("num", "bool", "text"), checked while parsing so errors point at the right token.


@dataclass
class Node:
    token: Token
    scope: str
    kind: str


@dataclass
class Const(Node):
    value: object = None


@dataclass
class Column(Node):
    name: str = ""


@dataclass
class Unary(Node):
    op: str = ""
    operand: Node = None


@dataclass
class Binary(Node):
    op: str = ""
    left: Node = None
    right: Node = None


@dataclass
class RowCall(Node):
    name: str = ""
    arg: Node = None


@dataclass
class Aggregate(Node):
    name: str = ""
    arg: Node | None = None
    where: Node | None = None
    q: float | None = None
    agg_id: int = 0


class _Parser:
    """Recursive descent over the token list; each method parses one grammar rule."""

    def __init__(self, formula: str, columns: dict[str, str]):
        self.formula, self.columns = formula, columns
        self.tokens = tokenize(formula)
        self.pos = 0
        self.aggregates: list[Aggregate] = []
        self.in_aggregate: Token | None = None

    # -- helpers
    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def fail(self, tok: Token, message: str):
        raise KPIError(self.formula, tok.col, message)

    def describe(self, tok: Token) -> str:
        return "the end of the formula" if tok.kind == "end" else repr(tok.text)

    def expect(self, op: str, context: str) -> Token:
        tok = self.peek()
        if tok.kind == "op" and tok.text == op:
            return self.take()
        self.fail(tok, f"expected {op!r} {context}, found {self.describe(tok)}")

    def is_op(self, *ops: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.text in ops

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok.kind == "name" and tok.text == word

    # -- rules
    def formula_(self) -> Node:
        if self.peek().kind == "end":
            self.fail(self.peek(), "the formula is empty")
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            if tok.text == ")":
                self.fail(tok, "unexpected ')' with no matching '('")
            self.fail(tok, f"unexpected {self.describe(tok)} after a complete expression "
                           "(missing an operator such as + or *?)")
        if node.scope == "row":
            self.fail(_first_column(node).token,
                      f"{_first_column(node).name} is a per-request column: wrap it in an aggregate, "
                      f"e.g. sum({_first_column(node).name}) or mean({_first_column(node).name})")
        if node.kind != "num":
            self.fail(node.token, "the formula must give a number, not a true/false condition "
                                  "(wrap a condition in share(...) or count(...))")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.is_word("or"):
            tok = self.take()
            node = self.logic(tok, "or", node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.is_word("and"):
            tok = self.take()
            node = self.logic(tok, "and", node, self.not_expr())
        return node

    def not_expr(self) -> Node:
        if self.is_word("not"):
            tok = self.take()
            operand = self.not_expr()
            if operand.kind != "bool":
                self.fail(operand.token, "'not' needs a condition such as outcome == \"ok\"")
            return Unary(tok, operand.scope, "bool", "not", operand)
        return self.comparison()

    def logic(self, tok: Token, op: str, left: Node, right: Node) -> Node:
        for side in (left, right):
            if side.kind != "bool":
                self.fail(side.token, f"'{op}' joins conditions; this is not one")
        return Binary(tok, _scope(left, right), "bool", op, left, right)

    def comparison(self) -> Node:
        left = self.sum_expr()
        if self.is_op("==", "!=", "<", "<=", ">", ">="):
            tok = self.take()
            right = self.sum_expr()
            self.check_comparison(tok, left, right)
            if self.is_op("==", "!=", "<", "<=", ">", ">="):
                self.fail(self.peek(), "comparisons cannot be chained; join them with 'and'")
            return Binary(tok, _scope(left, right), "bool", tok.text, left, right)
        return left

    def check_comparison(self, tok: Token, left: Node, right: Node) -> None:
        if (left.kind == "text") != (right.kind == "text"):
            text_side = left if left.kind == "text" else right
            self.fail(text_side.token, f"cannot compare text {text_side.token.text} with a number")
        if left.kind == "text":
            if tok.text not in ("==", "!="):
                self.fail(tok, f"text can only be compared with '==' or '!=', not {tok.text!r}")
            col = left if isinstance(left, Column) else right if isinstance(right, Column) else None
            const = right if isinstance(right, Const) else left if isinstance(left, Const) else None
            if col is None or const is None:
                self.fail(tok, "compare a text column with a quoted value, e.g. outcome == \"cache_hit\"")
            allowed = KNOWN_VALUES.get(col.name)
            if allowed and const.value not in allowed:
                hint = difflib.get_close_matches(str(const.value), allowed, n=1)
                self.fail(const.token, f"{col.name} is never {const.token.text}"
                          + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f"; its values are {', '.join(allowed)}")

    def sum_expr(self) -> Node:
        node = self.product()
        while self.is_op("+", "-"):
            tok = self.take()
            node = self.arith(tok, node, self.product())
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.is_op("*", "/"):
            tok = self.take()
            node = self.arith(tok, node, self.unary())
        return node

    def arith(self, tok: Token, left: Node, right: Node) -> Node:
        for side in (left, right):
            if side.kind == "text":
                self.fail(side.token, f"{side.token.text} is text; arithmetic needs numbers")
        return Binary(tok, _scope(left, right), "num", tok.text, left, right)

    def unary(self) -> Node:
        if self.is_op("-"):
            tok = self.take()
            operand = self.unary()
            if operand.kind == "text":
                self.fail(operand.token, "cannot negate text")
            return Unary(tok, operand.scope, "num", "-", operand)
        if self.is_op("+"):
            self.fail(self.peek(), "a leading '+' is not needed; remove it")
        return self.atom()

    def atom(self) -> Node:
        tok = self.peek()
        if tok.kind == "num":
            self.take()
            return Const(tok, "scalar", "num", tok.value)
        if tok.kind == "str":
            self.take()
            return Const(tok, "scalar", "text", tok.value)
        if tok.kind == "op" and tok.text == "(":
            self.take()
            if self.is_op(")"):
                self.fail(self.peek(), "empty parentheses")
            node = self.or_expr()
            self.expect(")", f"to close the '(' at column {tok.col}")
            return node
        if tok.kind == "name":
            self.take()
            if self.is_op("("):
                return self.call(tok)
            return self.column(tok)
        if tok.kind == "end":
            self.fail(tok, "the formula ends where a value was expected")
        self.fail(tok, f"expected a value (number, column, function), found {self.describe(tok)}")

    def column(self, tok: Token) -> Node:
        name = tok.text
        if name in KEYWORDS:
            self.fail(tok, f"'{name}' is a keyword and needs something before it")
        if name in AGGREGATES or name in ROW_FUNCTIONS:
            self.fail(tok, f"{name} is a function: write {name}(...)")
        if name in ("true", "false", "True", "False"):
            return Const(tok, "scalar", "bool", name.lower() == "true")
        kind = self.columns.get(name) or ("bool" if name.startswith("stage_") and name.isidentifier()
                                          and not name.startswith("__") else None)
        if kind is None:
            hint = difflib.get_close_matches(name, list(self.columns), n=1)
            self.fail(tok, f"unknown column {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                      + "; formulas can use ledger columns and the functions in lab.analysis.kpi")
        return Column(tok, "row", kind, name)

    def call(self, name_tok: Token) -> Node:
        name = name_tok.text
        open_tok = self.expect("(", "after the function name")
        if name in ROW_FUNCTIONS:
            arg = self.or_expr()
            if arg.kind != "num":
                self.fail(arg.token, f"{name}() needs a number")
            self.expect(")", f"to close {name}( at column {open_tok.col}")
            return RowCall(name_tok, arg.scope, "num", name, arg)
        if name not in AGGREGATES:
            hint = difflib.get_close_matches(name, sorted(AGGREGATES | ROW_FUNCTIONS), n=1)
            self.fail(name_tok, f"unknown function {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                      + f"; known: {', '.join(sorted(AGGREGATES | ROW_FUNCTIONS))}")
        if self.in_aggregate is not None:
            self.fail(name_tok, f"aggregates cannot be nested: {name}() inside "
                                f"{self.in_aggregate.text}() at column {self.in_aggregate.col}")
        self.in_aggregate = name_tok
        try:
            return self.aggregate(name_tok, open_tok)
        finally:
            self.in_aggregate = None

    def aggregate(self, name_tok: Token, open_tok: Token) -> Aggregate:
        name = name_tok.text
        arg = where = None
        q = None
        if not self.is_op(")"):
            arg = self.or_expr()
            if self.is_word("where"):
                self.take()
                where = self.or_expr()
                if where.kind != "bool":
                    self.fail(where.token, "'where' needs a condition such as outcome == \"ok\"")
            if self.is_op(","):
                comma = self.take()
                if name != "percentile":
                    self.fail(comma, f"{name}() takes one argument")
                q_tok = self.peek()
                if q_tok.kind != "num":
                    self.fail(q_tok, "percentile(x, q) needs a number q between 0 and 100")
                self.take()
                q = float(q_tok.value)
                if not 0.0 <= q <= 100.0:
                    self.fail(q_tok, f"percentile q must be between 0 and 100, got {q_tok.text}")
        close = self.expect(")", f"to close {name}( at column {open_tok.col}")
        if name == "percentile" and q is None:
            self.fail(close, "percentile(x, q) needs a second argument q, e.g. percentile(latency_ms, 95)")
        if arg is None and name != "count":
            self.fail(close, f"{name}() needs an argument, e.g. {name}(cost_usd)")
        if arg is not None:
            if arg.kind == "text" and name not in ("count", "distinct"):
                self.fail(arg.token, f"{arg.token.text} is text: {name}() needs numbers "
                                     f"(compare it instead, e.g. share({arg.token.text} == \"...\"))")
            if name in ("share", "rate") and arg.kind != "bool":
                self.fail(arg.token, f"{name}() needs a condition, e.g. {name}(outcome == \"cache_hit\")")
            if arg.scope == "scalar" and not (name == "count" and arg.kind == "bool"):
                self.fail(arg.token, f"{name}() aggregates per-request values; its argument uses no column")
        node = Aggregate(name_tok, "scalar", "num", name, arg, where, q, len(self.aggregates))
        self.aggregates.append(node)
        return node


def _scope(a: Node, b: Node) -> str:
    return "row" if "row" in (a.scope, b.scope) else "scalar"


def _first_column(node: Node) -> Column | None:
    if isinstance(node, Column):
        return node
    for child in (getattr(node, "operand", None), getattr(node, "left", None), getattr(node, "right", None),
                  getattr(node, "arg", None)):
        if isinstance(child, Node):
            found = _first_column(child)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------- evaluation


class Formula:
    """A parsed, checked formula; `evaluate` gives one value, `evaluate_slices` one per slice."""

    def __init__(self, text: str, columns: dict[str, str] | None = None):
        if not isinstance(text, str):
            raise KPIError(str(text), 1, "a formula is a string")
        self.text = text
        parser = _Parser(text, {**COLUMN_KINDS, **(columns or {})})
        self.tree = parser.formula_()
        self.aggregates = parser.aggregates

    def columns(self) -> set[str]:
        out = set()

        def walk(node):
            if isinstance(node, Column):
                out.add(node.name)
            for child in (getattr(node, "operand", None), getattr(node, "left", None),
                          getattr(node, "right", None), getattr(node, "arg", None), getattr(node, "where", None)):
                if isinstance(child, Node):
                    walk(child)
        walk(self.tree)
        return out

    def evaluate(self, ledger) -> float:
        """The formula's value over the whole ledger (NaN when it divides by zero: no data)."""
        led = as_ledger(ledger)
        return float(self.evaluate_slices(led, np.array([0, len(led)]))[0])

    def evaluate_slices(self, ledger: pd.DataFrame, bounds: np.ndarray) -> np.ndarray:
        """Values for consecutive row ranges [bounds[k], bounds[k+1]) of a ledger sorted by time."""
        missing = sorted(c for c in self.columns() if c not in ledger.columns)
        if missing:
            col = next(n for n in _walk(self.tree) if isinstance(n, Column) and n.name == missing[0])
            raise KPIError(self.text, col.token.col, f"this ledger has no column {missing[0]!r}")
        cache: dict[int, np.ndarray] = {}
        for agg in self.aggregates:
            cache[agg.agg_id] = _aggregate(agg, ledger, bounds)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = _scalar(self.tree, cache, len(bounds) - 1)
        out = np.array(np.broadcast_to(np.asarray(out, dtype=np.float64), (len(bounds) - 1,)))
        out[~np.isfinite(out)] = np.nan
        return out

    def __repr__(self) -> str:
        return f"Formula({self.text!r})"


def _walk(node):
    yield node
    for child in (getattr(node, "operand", None), getattr(node, "left", None), getattr(node, "right", None),
                  getattr(node, "arg", None), getattr(node, "where", None)):
        if isinstance(child, Node):
            yield from _walk(child)


def _row(node: Node, ledger: pd.DataFrame):
    """Per-request values of a row-scope node (numpy array), or a constant."""
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Column):
        series = ledger[node.name]
        if node.kind == "text":
            return series
        return series.to_numpy(dtype=bool if node.kind == "bool" else np.float64)
    if isinstance(node, Unary):
        v = _row(node.operand, ledger)
        return np.logical_not(v) if node.op == "not" else -np.asarray(v, dtype=np.float64)
    if isinstance(node, RowCall):
        return np.abs(_row(node.arg, ledger))
    if isinstance(node, Binary):
        a, b = _row(node.left, ledger), _row(node.right, ledger)
        return _apply(node.op, a, b)
    raise TypeError(f"not a row node: {node!r}")


def _apply(op: str, a, b):
    if op in ("==", "!="):
        if isinstance(a, pd.Series) or isinstance(b, pd.Series):
            series, value = (a, b) if isinstance(a, pd.Series) else (b, a)
            eq = (series.astype(str) == value).to_numpy(dtype=bool) if not isinstance(
                series.dtype, pd.CategoricalDtype) else (series == value).to_numpy(dtype=bool)
            return eq if op == "==" else ~eq
    if op == "and":
        return np.logical_and(a, b)
    if op == "or":
        return np.logical_or(a, b)
    a = np.asarray(a, dtype=np.float64) if not isinstance(a, float | int) else float(a)
    b = np.asarray(b, dtype=np.float64) if not isinstance(b, float | int) else float(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "==": np.equal,
                "!=": np.not_equal, "<": np.less, "<=": np.less_equal, ">": np.greater,
                ">=": np.greater_equal}[op](a, b)


_PCT = {"median": 50.0, "p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}


def _aggregate(agg: Aggregate, ledger: pd.DataFrame, bounds: np.ndarray) -> np.ndarray:
    """One aggregate over each slice, computed from per-request values evaluated once."""
    n = len(ledger)
    k = len(bounds) - 1
    if agg.arg is None:                                     # count()
        values, keep = None, np.ones(n, dtype=bool)
    else:
        values = _row(agg.arg, ledger)
        keep = np.ones(n, dtype=bool)
    if agg.where is not None:
        keep = keep & np.broadcast_to(np.asarray(_row(agg.where, ledger), dtype=bool), (n,))
    name = agg.name
    if name == "count":
        weights = keep.astype(np.float64)
        if values is not None and agg.arg.kind == "bool":
            weights = weights * np.broadcast_to(np.asarray(values, dtype=np.float64), (n,))
        return _sum_slices(weights, bounds)
    if name == "distinct":
        codes = pd.factorize(values if isinstance(values, pd.Series) else pd.Series(values))[0]
        return np.array([len(np.unique(codes[a:b][keep[a:b]])) for a, b in zip(bounds[:-1], bounds[1:])],
                        dtype=np.float64)
    x = np.broadcast_to(np.asarray(values, dtype=np.float64), (n,))
    if name in ("sum", "mean", "avg", "share", "rate"):
        total = _sum_slices(np.where(keep, x, 0.0), bounds)
        if name == "sum":
            return total
        count = _sum_slices(keep.astype(np.float64), bounds)
        with np.errstate(divide="ignore", invalid="ignore"):
            return total / count
    out = np.full(k, np.nan)
    q = agg.q if name == "percentile" else _PCT.get(name)
    for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        part = x[a:b][keep[a:b]]
        if not len(part):
            continue
        if name == "min":
            out[j] = part.min()
        elif name == "max":
            out[j] = part.max()
        else:
            out[j] = np.percentile(part, q)
    return out


def _sum_slices(x: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    csum = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    return csum[bounds[1:]] - csum[bounds[:-1]]


def _scalar(node: Node, cache: dict, k: int):
    if isinstance(node, Aggregate):
        return cache[node.agg_id]
    if isinstance(node, Const):
        return float(node.value)
    if isinstance(node, Unary):
        return -_scalar(node.operand, cache, k)
    if isinstance(node, Binary):
        return _apply(node.op, _scalar(node.left, cache, k), _scalar(node.right, cache, k))
    if isinstance(node, RowCall):
        return np.abs(_scalar(node.arg, cache, k))
    raise TypeError(f"not a scalar node: {node!r}")


# --------------------------------------------------------------------------- KPIs

STATUS_OK, STATUS_WARNING, STATUS_CRITICAL, STATUS_NO_DATA = "ok", "warning", "critical", "no data"


@dataclass
class KPI:
    """A named formula with a unit and thresholds; `higher_is_better` is inferred when omitted.

    With both thresholds given, `warning > critical` means lower values are worse (a hit
    rate), otherwise higher values are worse (a cost).
    """

    name: str
    formula: str
    unit: str = ""
    warning: float | None = None
    critical: float | None = None
    higher_is_better: bool | None = None
    description: str = ""
    _parsed: Formula = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self._parsed = Formula(self.formula)
        if self.higher_is_better is None:
            self.higher_is_better = (self.warning is not None and self.critical is not None
                                     and self.warning > self.critical)

    def value(self, ledger) -> float:
        return self._parsed.evaluate(ledger)

    def status(self, value: float) -> str:
        """ok, warning, critical or "no data" for a value against the thresholds."""
        if value is None or not math.isfinite(value):
            return STATUS_NO_DATA
        worse = (lambda v, t: v <= t) if self.higher_is_better else (lambda v, t: v >= t)
        if self.critical is not None and worse(value, self.critical):
            return STATUS_CRITICAL
        if self.warning is not None and worse(value, self.warning):
            return STATUS_WARNING
        return STATUS_OK

    def over_time(self, ledger, bucket_s: float | None = None) -> pd.DataFrame:
        """The KPI per time bucket of arrival: `t_start_s`, `value`, `status`."""
        led = as_ledger(ledger)
        t = led["t_arrival_s"].to_numpy()
        if len(t) > 1 and np.any(np.diff(t) < 0):
            led = led.sort_values("t_arrival_s", kind="stable")
            t = led["t_arrival_s"].to_numpy()
        from lab.analysis.frame import horizon_s

        bucket_s = bucket_s or nice_bucket_s(horizon_s(led))
        n = n_buckets_for(led, bucket_s)
        idx = bucket_index(t, bucket_s, n)
        bounds = np.searchsorted(idx, np.arange(n + 1), side="left")
        values = self._parsed.evaluate_slices(led, bounds)
        return pd.DataFrame({"t_start_s": np.arange(n) * bucket_s, "value": values,
                             "status": [self.status(v) for v in values]})

    def _repr_html_(self) -> str:
        return (f"<p><b>{html.escape(self.name)}</b> = <code>{html.escape(self.formula)}</code> "
                f"({html.escape(self.unit)}; warning {self.warning}, critical {self.critical})</p>")


def standard_kpis(sla_ms: float | None = None) -> list[KPI]:
    """The KPIs a cost review starts from; SLA-based ones only when `sla_ms` is known."""
    kpis = [
        KPI("cost per 1k requests", "1000 * sum(cost_usd) / count()", "USD",
            description="what a thousand requests cost after optimization"),
        KPI("share of bill saved", "1 - sum(cost_usd) / sum(baseline_cost_usd)", "share", 0.2, 0.0,
            description="saving against the no-optimization baseline"),
        KPI("cache hit rate", 'share(outcome == "cache_hit")', "share", 0.5, 0.3,
            description="answered by a response cache"),
        KPI("error rate", 'share(outcome == "error")', "share", 0.01, 0.05),
        KPI("latency p95", "p95(latency_ms)", "ms", 0.8 * sla_ms if sla_ms else None, sla_ms),
        KPI("mean quality", "mean(quality)", "0..1", 0.97, 0.9),
        KPI("tokens per request", "mean(input_tokens + output_tokens)", "tokens"),
    ]
    if sla_ms:
        kpis.insert(4, KPI("SLA violation rate",
                           f'share(latency_ms > {sla_ms:g} or outcome == "error" or outcome == "rejected")',
                           "share", 0.01, 0.05, description=f"slower than {sla_ms:g} ms or failed"))
    return kpis


def kpi_table(kpis, ledger) -> pd.DataFrame:
    """Each KPI's value and status over the whole ledger ("no data" when it lacks a column)."""
    led = as_ledger(ledger)
    rows = []
    for k in kpis:
        missing = sorted(c for c in k._parsed.columns() if c not in led.columns)
        v = math.nan if missing else k.value(led)     # e.g. no `quality` in an old ledger: no data
        rows.append({"kpi": k.name, "value": v, "unit": k.unit, "status": k.status(v),
                     "warning": k.warning, "critical": k.critical, "formula": k.formula})
    return pd.DataFrame(rows).set_index("kpi")


def load_kpis(path) -> list[KPI]:
    """KPIs from a TOML file of `[[kpi]]` tables: name, formula, unit, warning, critical, higher_is_better.

        [[kpi]]
        name = "cost per 1k requests"
        formula = "1000 * sum(cost_usd) / count()"
        unit = "USD"
        warning = 0.2
        critical = 0.3

    A bad entry is an error naming the file, the entry and (for formulas) the column.
    """
    import tomllib
    from pathlib import Path

    from lab.errors import ConfigError

    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such KPI file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: not a TOML file ({exc})") from None
    entries = data.get("kpi")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{p}: expected one or more [[kpi]] tables")
    allowed = {"name", "formula", "unit", "warning", "critical", "higher_is_better", "description"}
    kpis = []
    for k, entry in enumerate(entries):
        where = f"{p}: kpi[{k}]"
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")
        if not isinstance(entry.get("name"), str) or not isinstance(entry.get("formula"), str):
            raise ConfigError(f"{where}: needs a name and a formula (strings)")
        for field_name in ("warning", "critical"):
            if field_name in entry and not isinstance(entry[field_name], (int, float)):
                raise ConfigError(f"{where}.{field_name}: expected a number")
        try:
            kpis.append(KPI(entry["name"], entry["formula"], str(entry.get("unit", "")), entry.get("warning"),
                            entry.get("critical"), entry.get("higher_is_better"), str(entry.get("description", ""))))
        except KPIError as exc:
            raise ConfigError(f"{where} ({entry['name']}): {exc}") from None
    return kpis
