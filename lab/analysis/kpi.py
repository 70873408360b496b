"""KPI designer: a name, a formula over ledger columns, a unit and warning/critical thresholds.

Formulas are read by Python's own tokenizer and parser (`tokenize`, `ast` in "eval" mode),
then checked against a whitelist: numbers, quoted text, ledger columns, `+ - * /`, unary
`-`, one comparison (`== != < <= > >=`), `and`/`or`/`not` and the functions below. Nothing
else (attributes, subscripts, lambdas, keywords Python knows and formulas do not) gets
through, and the tree is evaluated here on numpy arrays: user text is never run. A bad
formula raises `KPIError` naming the offending token and its column (1-based).

Aggregates turn per-request values into one number: `sum`, `mean` (`avg`), `min`, `max`,
`median`, `p50`, `p90`, `p95`, `p99`, `percentile(x, q)`, `count()` (rows), `count(cond)`
(rows where cond holds), `share(cond)` (`rate`; the fraction where it holds), `distinct(x)`.
Any aggregate takes `where cond` to look at a subset: `p95(latency_ms where outcome == "ok")`.
Per-request expressions combine columns with `+ - * /`, comparisons, `and`/`or`/`not`, and
`abs(x)`. The whole formula must be a number built from aggregates and constants:

    1000 * sum(cost_usd) / count()                  cost per 1k requests
    count(outcome == "cache_hit") / count()         cache hit rate
    1 - sum(cost_usd) / sum(baseline_cost_usd)      share of the bill saved

Whitespace of any kind (line breaks too) reads as a space. A formula is at most
`MAX_CHARS` characters and `MAX_DEPTH` levels deep, so no input can exhaust the parser.
"""

from __future__ import annotations

import ast
import difflib
import io
import keyword
import math
import re
import tokenize as pytokenize
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lab.analysis.frame import as_ledger, bucket_index, horizon_s, n_buckets_for, nice_bucket_s
from lab.errors import ConfigError, CostlabError
from lab.fmt import html_text
from lab.ledger import CONTRACT_COLUMNS, OUTCOMES

MAX_CHARS = 1000
MAX_DEPTH = 100          # nested parentheses, and levels of the syntax tree


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


_OPS = {"==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "(", ")", ","}
_COMPARISONS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_ARITHMETIC = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_HINTS = {"=": " (use '==' to compare)", "**": " (powers are not supported)",
          **dict.fromkeys(("&", "|", "!"), " (use 'and', 'or', 'not')")}
_SKIPPED = (pytokenize.NEWLINE, pytokenize.NL, pytokenize.ENDMARKER, pytokenize.INDENT, pytokenize.DEDENT)


def _one_line(formula: str) -> str:
    """The formula with every whitespace character as a space: one line, the same columns."""
    return re.sub(r"\s", " ", formula)


def tokenize(formula: str) -> list[Token]:
    """Split a formula into tokens (Python's tokenizer); an unknown character is an error at its column."""
    if len(formula) > MAX_CHARS:
        raise KPIError(formula, MAX_CHARS + 1, f"the formula is longer than {MAX_CHARS:,} characters")
    raw = []
    try:
        raw.extend(t for t in pytokenize.generate_tokens(io.StringIO(_one_line(formula)).readline)
                   if t.type not in _SKIPPED)
    except pytokenize.TokenError:
        pass                       # the input ends inside '(': `_check_order` names the '(' left open
    tokens = []
    for k, t in enumerate(raw):
        col = t.start[1] + 1
        if t.type == pytokenize.NAME:
            tokens.append(Token("name", t.string, col))
        elif t.type == pytokenize.NUMBER:
            tokens.append(_number(formula, t.string, col, raw[k + 1] if k + 1 < len(raw) else None))
        elif t.type == pytokenize.STRING:
            if t.string[0] not in "'\"":
                raise KPIError(formula, col, "quoted text takes no prefix (such as f, r or b)")
            tokens.append(Token("str", t.string, col, t.string[1:-1]))
        elif t.type == pytokenize.OP and t.string in _OPS:
            tokens.append(Token("op", t.string, col))
        elif t.string.isspace():
            continue
        elif t.string in "'\"":
            raise KPIError(formula, col, "string is never closed")
        else:
            what = "character " if len(t.string) == 1 else ""
            raise KPIError(formula, col, f"unexpected {what}{t.string!r}{_HINTS.get(t.string, '')}")
    tokens.append(Token("end", "", len(formula) + 1))
    return tokens


def _number(formula: str, text: str, col: int, following) -> Token:
    if not _NUMBER.fullmatch(text):
        raise KPIError(formula, col, f"malformed number {text!r}")
    if following is not None and following.type == pytokenize.NAME and following.start[1] == col - 1 + len(text):
        raise KPIError(formula, following.start[1] + 1,
                       f"unexpected {following.string[0]!r} right after the number {text}")
    value = float(text)
    if not math.isfinite(value):
        raise KPIError(formula, col, f"the number {text} is too large")
    return Token("num", text, col, value)


def _describe(tok: Token) -> str:
    return "the end of the formula" if tok.kind == "end" else repr(tok.text)


def _check_order(formula: str, tokens: list[Token]) -> None:
    """Values and operators alternate and parentheses pair up; an error points where the order breaks.

    Python's parser would refuse the same formulas, but its messages point at the start of the
    expression; this walk names the token that is out of place.
    """
    def fail(tok: Token, message: str):
        raise KPIError(formula, tok.col, message)

    want_value = True
    opens: list[tuple[Token, Token | None]] = []        # each open '(' and the function name before it
    prev: Token | None = None
    for tok in tokens:
        if want_value:
            if tok.kind in ("num", "str"):
                want_value = False
            elif tok.kind == "name":
                if tok.text in KEYWORDS and tok.text != "not":
                    fail(tok, f"'{tok.text}' is a keyword and needs something before it")
                if keyword.iskeyword(tok.text) and tok.text not in ("not", "True", "False", "None"):
                    fail(tok, f"{tok.text!r} is Python, not a column or function of a formula")
                want_value = tok.text == "not"
            elif tok.text == "(":
                opens.append((tok, None))
            elif tok.text == "+":
                fail(tok, "a leading '+' is not needed; remove it")
            elif tok.text == ")" and prev is not None and prev.kind == "op" and prev.text == "(":
                if opens[-1][1] is None:
                    fail(tok, "empty parentheses")
                opens.pop()                              # a call with no arguments: count()
                want_value = False
            elif tok.kind == "end":
                fail(tok, "the formula is empty" if prev is None else "the formula ends where a value was expected")
            elif tok.text != "-":
                fail(tok, f"expected a value (number, column, function), found {_describe(tok)}")
        elif tok.text == "(" and tok.kind == "op" and prev.kind == "name":
            opens.append((tok, prev))                   # a call
            want_value = True
        elif tok.text == ")" and tok.kind == "op":
            if not opens:
                fail(tok, "unexpected ')' with no matching '('")
            opens.pop()
        elif tok.kind == "end":
            if opens:
                open_tok, name = opens[-1]
                what = f"{name.text}(" if name else "the '('"
                fail(tok, f"expected ')' to close {what} at column {open_tok.col}, found the end of the formula")
        elif tok.kind == "op" or tok.text in ("and", "or", "where"):
            in_call = bool(opens) and opens[-1][1] is not None
            if tok.text == "," and not in_call:
                fail(tok, "',' separates a function's arguments, e.g. percentile(latency_ms, 95)")
            if tok.text == "where" and not in_call:
                fail(tok, "'where' goes inside an aggregate's parentheses, e.g. sum(cost_usd where tenant == \"a\")")
            want_value = True
        else:
            fail(tok, f"unexpected {_describe(tok)} after a complete expression "
                      "(missing an operator such as + or *?)")
        if len(opens) > MAX_DEPTH:
            fail(tok, f"more than {MAX_DEPTH} nested parentheses")
        prev = tok


# `ast.parse` is `compile(..., PyCF_ONLY_AST)`: it builds the syntax tree and runs nothing. Bound
# here once, so reading a formula never looks up a code-running builtin by name.
_compile = compile


def _python_tree(formula: str, tokens: list[Token]) -> tuple[ast.expr, str]:
    """Python's syntax tree of a checked formula and the text it was parsed from.

    The text is the formula in parentheses (so leading spaces are no indent), which puts
    column k of the formula at index k of the text. `where` is not Python: each one becomes
    `,   *` (as wide, so every column stays), which Python reads as a starred argument of the
    call; `_Tree` takes it back as the condition.
    """
    source = list(f"({_one_line(formula)})")
    for tok in tokens:
        if tok.kind == "name" and tok.text == "where":
            source[tok.col:tok.col + 5] = ",   *"
    text = "".join(source)
    try:
        tree = _compile(text, "<formula>", "eval", ast.PyCF_ONLY_AST)
    except SyntaxError as exc:                   # what `_check_order` lets through Python still refuses
        raise KPIError(formula, max(1, (exc.offset or 2) - 1), f"cannot read the formula here ({exc.msg})") from None
    return tree.body, text


# --------------------------------------------------------------------------- syntax tree
# Each node knows its `scope` ("row": one value per request, "scalar": one per bucket) and
# `kind` ("num", "bool", "text"), checked while building so errors point at the right token.


@dataclass
class Node:
    col: int         # 1-based column in the formula (an operator's own column for a binary node)
    text: str        # the token: a column name, a quoted value, an operator, a function name
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


def _children(node: Node):
    for name in ("operand", "left", "right", "arg", "where"):
        child = getattr(node, name, None)
        if isinstance(child, Node):
            yield child


def _walk(node: Node):
    yield node
    for child in _children(node):
        yield from _walk(child)


def _scope(a: Node, b: Node) -> str:
    return "row" if "row" in (a.scope, b.scope) else "scalar"


class _Tree:
    """Turns Python's syntax tree of a formula into KPI nodes, refusing every node type not whitelisted."""

    def __init__(self, formula: str, columns: dict[str, str]):
        self.formula, self.columns = formula, columns
        self.tokens = tokenize(formula)
        _check_order(formula, self.tokens)
        body, self.source = _python_tree(formula, self.tokens)
        self._check_depth(body)
        self.aggregates: list[Aggregate] = []
        self.in_aggregate: Node | None = None
        self.root = self.formula_(body)

    # -- positions
    def fail(self, col: int, message: str):
        raise KPIError(self.formula, col, message)

    def col(self, node: ast.AST, end: bool = False) -> int:
        """Column of a node's first character (`end`: of its last), from Python's byte offsets."""
        offset = node.end_col_offset - 1 if end else node.col_offset
        return len(self.source.encode()[:offset].decode("utf-8", "ignore"))

    def segment(self, node: ast.AST) -> str:
        return self.source[self.col(node):self.col(node, end=True) + 1]

    def op_between(self, left: ast.AST, right: ast.AST) -> Token:
        """The operator token between two operands (ast keeps no position for operators)."""
        lo, hi = self.col(left, end=True), self.col(right)
        return next(t for t in self.tokens if lo < t.col < hi and t.kind in ("op", "name") and t.text not in "()")

    def _check_depth(self, body: ast.AST) -> None:
        stack = [(body, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                self.fail(self.col(node), f"the formula nests more than {MAX_DEPTH} levels deep")
            stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr))

    # -- the whole formula
    def formula_(self, body: ast.expr) -> Node:
        node = self.build(body)
        if node.scope == "row":
            col = next(n for n in _walk(node) if isinstance(n, Column))
            self.fail(col.col, f"{col.name} is a per-request column: wrap it in an aggregate, "
                               f"e.g. sum({col.name}) or mean({col.name})")
        if node.kind != "num":
            self.fail(node.col, "the formula must give a number, not a true/false condition "
                                "(wrap a condition in share(...) or count(...))")
        return node

    def build(self, node: ast.expr) -> Node:
        """The KPI node for one whitelisted Python node; anything else is an error at its column."""
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.Not):
            return self.unary(node)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return self.arith(node)
        if isinstance(node, ast.BoolOp):
            return self.logic(node)
        if isinstance(node, ast.Compare) and all(type(op) in _COMPARISONS for op in node.ops):
            return self.comparison(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            return self.call(node)
        self.fail(self.col(node), f"{self.segment(node)!r} is not something a formula can contain")

    # -- leaves
    def constant(self, node: ast.Constant) -> Node:
        value, text, col = node.value, self.segment(node), self.col(node)
        if isinstance(value, bool):
            return Const(col, text, "scalar", "bool", value)
        if isinstance(value, str):
            return Const(col, text, "scalar", "text", value)
        if isinstance(value, int | float):
            return Const(col, text, "scalar", "num", float(value))
        return self.column_named(col, text)              # None

    def name(self, node: ast.Name) -> Node:
        if node.id in ("true", "false"):
            return Const(self.col(node), node.id, "scalar", "bool", node.id == "true")
        return self.column_named(self.col(node), node.id)

    def column_named(self, col: int, name: str) -> Node:
        if name in AGGREGATES or name in ROW_FUNCTIONS:
            self.fail(col, f"{name} is a function: write {name}(...)")
        kind = self.columns.get(name) or ("bool" if name.startswith("stage_") and name.isidentifier()
                                          and not name.startswith("__") else None)
        if kind is None:
            hint = difflib.get_close_matches(name, list(self.columns), n=1)
            self.fail(col, f"unknown column {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                      + "; formulas can use ledger columns and the functions in lab.analysis.kpi")
        return Column(col, name, "row", kind, name)

    # -- operators
    def unary(self, node: ast.UnaryOp) -> Node:
        operand = self.build(node.operand)
        col = self.col(node)
        if isinstance(node.op, ast.Not):
            if operand.kind != "bool":
                self.fail(operand.col, "'not' needs a condition such as outcome == \"ok\"")
            return Unary(col, "not", operand.scope, "bool", "not", operand)
        if operand.kind == "text":
            self.fail(operand.col, "cannot negate text")
        return Unary(col, "-", operand.scope, "num", "-", operand)

    def arith(self, node: ast.BinOp) -> Node:
        left, right = self.build(node.left), self.build(node.right)
        for side in (left, right):
            if side.kind == "text":
                self.fail(side.col, f"{side.text} is text; arithmetic needs numbers")
        op = self.op_between(node.left, node.right)
        return Binary(op.col, op.text, _scope(left, right), "num", _ARITHMETIC[type(node.op)], left, right)

    def logic(self, node: ast.BoolOp) -> Node:
        word = "and" if isinstance(node.op, ast.And) else "or"
        sides = [self.build(v) for v in node.values]
        out = sides[0]
        for prev_ast, value_ast, side in zip(node.values, node.values[1:], sides[1:]):
            for s in (out, side):
                if s.kind != "bool":
                    self.fail(s.col, f"'{word}' joins conditions; this is not one")
            op = self.op_between(prev_ast, value_ast)
            out = Binary(op.col, word, _scope(out, side), "bool", word, out, side)
        return out

    def comparison(self, node: ast.Compare) -> Node:
        left, right = self.build(node.left), self.build(node.comparators[0])
        op = self.op_between(node.left, node.comparators[0])
        if len(node.ops) > 1:
            self.fail(self.op_between(node.comparators[0], node.comparators[1]).col,
                      "comparisons cannot be chained; join them with 'and'")
        self.check_comparison(op, left, right)
        return Binary(op.col, op.text, _scope(left, right), "bool", op.text, left, right)

    def check_comparison(self, op: Token, left: Node, right: Node) -> None:
        if (left.kind == "text") != (right.kind == "text"):
            text_side = left if left.kind == "text" else right
            self.fail(text_side.col, f"cannot compare text {text_side.text} with a number")
        if left.kind == "text":
            if op.text not in ("==", "!="):
                self.fail(op.col, f"text can only be compared with '==' or '!=', not {op.text!r}")
            col = left if isinstance(left, Column) else right if isinstance(right, Column) else None
            const = right if isinstance(right, Const) else left if isinstance(left, Const) else None
            if col is None or const is None:
                self.fail(op.col, "compare a text column with a quoted value, e.g. outcome == \"cache_hit\"")
            allowed = KNOWN_VALUES.get(col.name)
            if allowed and const.value not in allowed:
                hint = difflib.get_close_matches(str(const.value), allowed, n=1)
                self.fail(const.col, f"{col.name} is never {const.text}"
                          + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f"; its values are {', '.join(allowed)}")

    # -- functions
    def call(self, node: ast.Call) -> Node:
        name, col = node.func.id, self.col(node)
        if name in ROW_FUNCTIONS:
            if len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
                self.fail(col, f"{name}() takes one argument, e.g. {name}(cost_usd - 2)")
            arg = self.build(node.args[0])
            if arg.kind != "num":
                self.fail(arg.col, f"{name}() needs a number")
            return RowCall(col, name, arg.scope, "num", name, arg)
        if name not in AGGREGATES:
            known = sorted(AGGREGATES | ROW_FUNCTIONS)
            hint = difflib.get_close_matches(name, known, n=1)
            self.fail(col, f"unknown function {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                      + f"; known: {', '.join(known)}")
        if self.in_aggregate is not None:
            self.fail(col, f"aggregates cannot be nested: {name}() inside "
                           f"{self.in_aggregate.text}() at column {self.in_aggregate.col}")
        self.in_aggregate = Node(col, name, "scalar", "num")
        try:
            return self.aggregate(node, name, col)
        finally:
            self.in_aggregate = None

    def aggregate(self, node: ast.Call, name: str, col: int) -> Aggregate:
        args = list(node.args)
        starred = [a for a in args if isinstance(a, ast.Starred)]
        if len(starred) > 1:
            self.fail(self.col(starred[1]) - 4, f"{name}() takes one 'where'")
        if starred and args.index(starred[0]) != 1:
            self.fail(self.col(starred[0]) - 4, "'where' goes right after the aggregate's argument")
        arg = self.build(args[0]) if args else None
        where = None
        if starred:
            where = self.build(starred[0].value)
            if where.kind != "bool":
                self.fail(where.col, "'where' needs a condition such as outcome == \"ok\"")
            args.remove(starred[0])
        q = None
        if len(args) > 1:
            comma = self.op_between(args[0] if not starred else starred[0], args[1])
            if name != "percentile":
                self.fail(comma.col, f"{name}() takes one argument")
            if len(args) > 2:
                self.fail(self.op_between(args[1], args[2]).col, "percentile() takes two arguments: x and q")
            q_node = args[1]
            if not (isinstance(q_node, ast.Constant) and type(q_node.value) in (int, float)):
                self.fail(self.col(q_node), "percentile(x, q) needs a number q between 0 and 100")
            q = float(q_node.value)
            if not 0.0 <= q <= 100.0:
                self.fail(self.col(q_node), f"percentile q must be between 0 and 100, got {self.segment(q_node)}")
        close = self.col(node, end=True)
        if name == "percentile" and q is None:
            self.fail(close, "percentile(x, q) needs a second argument q, e.g. percentile(latency_ms, 95)")
        if arg is None and name != "count":
            self.fail(close, f"{name}() needs an argument, e.g. {name}(cost_usd)")
        if arg is not None:
            if arg.kind == "text" and name not in ("count", "distinct"):
                self.fail(arg.col, f"{arg.text} is text: {name}() needs numbers "
                                   f"(compare it instead, e.g. share({arg.text} == \"...\"))")
            if name in ("share", "rate") and arg.kind != "bool":
                self.fail(arg.col, f"{name}() needs a condition, e.g. {name}(outcome == \"cache_hit\")")
            if arg.scope == "scalar" and not (name == "count" and arg.kind == "bool"):
                self.fail(arg.col, f"{name}() aggregates per-request values; its argument uses no column")
        agg = Aggregate(col, name, "scalar", "num", name, arg, where, q, len(self.aggregates))
        self.aggregates.append(agg)
        return agg


# --------------------------------------------------------------------------- evaluation


class Formula:
    """A parsed, checked formula; `evaluate` gives one value, `evaluate_slices` one per slice."""

    def __init__(self, text: str, columns: dict[str, str] | None = None):
        if not isinstance(text, str):
            raise KPIError(str(text), 1, "a formula is a string")
        self.text = text
        tree = _Tree(text, {**COLUMN_KINDS, **(columns or {})})
        self.tree, self.aggregates = tree.root, tree.aggregates

    def columns(self) -> set[str]:
        return {n.name for n in _walk(self.tree) if isinstance(n, Column)}

    def evaluate(self, ledger) -> float:
        """The formula's value over the whole ledger (NaN when it divides by zero: no data)."""
        led = as_ledger(ledger)
        return float(self.evaluate_slices(led, np.array([0, len(led)]))[0])

    def evaluate_slices(self, ledger: pd.DataFrame, bounds: np.ndarray) -> np.ndarray:
        """Values for consecutive row ranges [bounds[k], bounds[k+1]) of a ledger sorted by time."""
        missing = sorted(c for c in self.columns() if c not in ledger.columns)
        if missing:
            col = next(n for n in _walk(self.tree) if isinstance(n, Column) and n.name == missing[0])
            raise KPIError(self.text, col.col, f"this ledger has no column {missing[0]!r}")
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
        bucket_s = bucket_s or nice_bucket_s(horizon_s(led))
        n = n_buckets_for(led, bucket_s)
        idx = bucket_index(t, bucket_s, n)
        bounds = np.searchsorted(idx, np.arange(n + 1), side="left")
        values = self._parsed.evaluate_slices(led, bounds)
        return pd.DataFrame({"t_start_s": np.arange(n) * bucket_s, "value": values,
                             "status": [self.status(v) for v in values]})

    def _repr_html_(self) -> str:
        return (f"<p><b>{html_text(self.name)}</b> = <code>{html_text(self.formula)}</code> "
                f"({html_text(self.unit)}; warning {self.warning}, critical {self.critical})</p>")


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
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such KPI file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: not a TOML file ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{p}: arrays or tables nested too deeply to read") from None
    entries = data.get("kpi")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{p}: expected one or more [[kpi]] tables")
    allowed = {"name", "formula", "unit", "warning", "critical", "higher_is_better", "description"}
    kpis = []
    seen: dict[str, int] = {}
    for k, entry in enumerate(entries):
        where = f"{p}: kpi[{k}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a [[kpi]] table")
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")
        if not isinstance(entry.get("name"), str) or not isinstance(entry.get("formula"), str):
            raise ConfigError(f"{where}: needs a name and a formula (strings)")
        if entry["name"] in seen:
            raise ConfigError(f"{where}: the name {entry['name']!r} is already used by kpi[{seen[entry['name']]}]; "
                              "each KPI needs its own name")
        seen[entry["name"]] = k
        for field_name in ("warning", "critical"):
            if field_name in entry and not isinstance(entry[field_name], (int, float)):
                raise ConfigError(f"{where}.{field_name}: expected a number")
        try:
            kpis.append(KPI(entry["name"], entry["formula"], str(entry.get("unit", "")), entry.get("warning"),
                            entry.get("critical"), entry.get("higher_is_better"), str(entry.get("description", ""))))
        except KPIError as exc:
            raise ConfigError(f"{where} ({entry['name']}): {exc}") from None
    return kpis
