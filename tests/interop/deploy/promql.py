"""What a PromQL expression reads: its series selectors (metric name and label matchers)
and the labels it groups by, found by tokenizing the expression (not by regular
expressions over the text), so function names, aggregation keywords, label lists,
strings, range and subquery brackets and Grafana's ``$variables`` are never mistaken for
metric names.

Also a reader of the Prometheus text format (what ``/metrics`` serves): the sample names
with the label names and values seen on each.

    >>> parse('sum by (cause) (rate(x_total{job="a", cause!="b"}[5m]))').selectors
    [Selector(name='x_total', matchers=(('job', '=', 'a'), ('cause', '!=', 'b')))]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Words that are never metric names where they stand. `by`/`without` (aggregations) and
# `on`/`ignoring`/`group_left`/`group_right` (vector matching) take a parenthesized
# label list; the others are operators or modifiers.
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
OPERATOR_KEYWORDS = {"and", "or", "unless", "atan2", "bool", "offset"}
NUMBER_WORDS = {"inf", "nan"}
# Aggregation operators: `sum by (x) (...)` puts the label list before the parenthesis.
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
# Those that select series rather than combine them, keeping their labels.
SELECTING_AGGREGATIONS = {"bottomk", "topk", "limitk", "limit_ratio"}

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]*\]\])
  | (?P<number>(?:0x[0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
                (?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<matchop>=~|!~|!=)
  | (?P<op>==|<=|>=|[-+*/%^<>=@,])
  | (?P<open>[({\[])
  | (?P<close>[)}\]])
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    """An expression this reader cannot tokenize or whose brackets do not balance."""


@dataclass(frozen=True)
class Selector:
    """One series selector: ``name{label op "value", ...}``."""

    name: str
    matchers: tuple[tuple[str, str, str], ...] = ()


@dataclass
class Parsed:
    selectors: list[Selector] = field(default_factory=list)
    # Labels named in by/without/on/ignoring/group_left/group_right lists.
    grouping_labels: set[str] = field(default_factory=set)
    # Whether an aggregation that keeps only its `by` labels (sum, max, ...; not topk,
    # which keeps its input's) appears.
    aggregated: bool = False

    @property
    def metric_names(self) -> set[str]:
        return {s.name for s in self.selectors}


def tokenize(expr: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise PromQLError(f"cannot read {expr[pos:pos + 20]!r} at {pos} in {expr!r}")
        pos = m.end()
        if m.lastgroup != "space":
            tokens.append((m.lastgroup, m.group()))
    return tokens


def _unquote(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _matchers(tokens: list[tuple[str, str]], i: int, expr: str) -> tuple[list[tuple[str, str, str]], int]:
    """Reads a `{...}` matcher list starting at tokens[i] == `{`; returns it and the index
    after the closing brace."""
    if tokens[i] != ("open", "{"):
        raise PromQLError(f"expected {{ at token {i} of {expr!r}")
    i += 1
    out = []
    while True:
        kind, text = tokens[i]
        if kind == "end":
            raise PromQLError(f"unclosed {{ in {expr!r}")
        if (kind, text) == ("close", "}"):
            return out, i + 1
        if (kind, text) == ("op", ","):
            i += 1
            continue
        if kind == "string" and tokens[i + 1] in (("op", ","), ("close", "}")):
            # Prometheus 3 quoted metric name: {"name", label="x"}.
            out.append(("__name__", "=", _unquote(text)))
            i += 1
            continue
        if kind not in ("ident", "string"):
            raise PromQLError(f"expected a label name, got {text!r} in {expr!r}")
        label = _unquote(text) if kind == "string" else text
        op_kind, op = tokens[i + 1]
        if op not in ("=", "!=", "=~", "!~"):
            raise PromQLError(f"expected a matcher operator after {label!r}, got {op!r} in {expr!r}")
        value_kind, value = tokens[i + 2]
        if value_kind != "string":
            raise PromQLError(f"expected a quoted value for {label!r}, got {value!r} in {expr!r}")
        out.append((label, op, _unquote(value)))
        i += 3


def _label_list(tokens: list[tuple[str, str]], i: int, expr: str) -> tuple[list[str], int]:
    """Reads a `(label, ...)` list starting at tokens[i] == `(`."""
    if tokens[i] != ("open", "("):
        raise PromQLError(f"expected a ( label list at token {i} of {expr!r}")
    i += 1
    labels = []
    while tokens[i] != ("close", ")"):
        kind, text = tokens[i]
        if kind == "end":
            raise PromQLError(f"unclosed label list in {expr!r}")
        if kind in ("ident", "string"):
            labels.append(_unquote(text) if kind == "string" else text)
        elif (kind, text) != ("op", ","):
            raise PromQLError(f"unexpected {text!r} in a label list of {expr!r}")
        i += 1
    return labels, i + 1


def parse(expr: str) -> Parsed:
    """The selectors and grouping labels of a PromQL expression."""
    tokens = tokenize(expr) + [("end", "")] * 3  # lookahead past the end reads "end"
    out = Parsed()
    depth = []  # open brackets, to check balance
    i = 0
    while tokens[i][0] != "end":
        kind, text = tokens[i]
        nxt = tokens[i + 1]
        if kind == "open" and text == "[":
            # A range or subquery ([5m], [$__rate_interval], [1h:5m]): durations only.
            j = i + 1
            while tokens[j] != ("close", "]"):
                if tokens[j][0] == "end":
                    raise PromQLError(f"unclosed [ in {expr!r}")
                j += 1
            i = j + 1
            continue
        if kind == "open" and text == "{":
            # A selector without a metric name: {__name__="x", ...}.
            matchers, i = _matchers(tokens, i, expr)
            names = [v for (l, op, v) in matchers if l == "__name__" and op == "="]
            if not names:
                raise PromQLError(f"a selector without a metric name in {expr!r}")
            out.selectors.append(Selector(names[0], tuple(m for m in matchers if m[0] != "__name__")))
            continue
        if kind == "ident":
            word = text.lower()
            if word in LABEL_LIST_KEYWORDS:
                if nxt == ("open", "("):
                    labels, i = _label_list(tokens, i + 1, expr)
                    out.grouping_labels.update(labels)
                else:
                    i += 1  # group_left without a list
                continue
            if word in OPERATOR_KEYWORDS or word in NUMBER_WORDS:
                i += 1
                continue
            if word in AGGREGATIONS - SELECTING_AGGREGATIONS and (
                    nxt == ("open", "(") or nxt[0] == "ident"):
                out.aggregated = True
            if word in AGGREGATIONS and nxt[0] == "ident" and nxt[1].lower() in ("by", "without"):
                labels, i = _label_list(tokens, i + 2, expr)
                out.grouping_labels.update(labels)
                if tokens[i] != ("open", "("):
                    raise PromQLError(f"expected ( after {text} {nxt[1]} (...) in {expr!r}")
                depth.append("(")
                i += 1
                continue
            if nxt == ("open", "("):
                # A function or aggregation call; its arguments are read as they come.
                depth.append("(")
                i += 2
                continue
            matchers: list[tuple[str, str, str]] = []
            i += 1
            if tokens[i] == ("open", "{"):
                matchers, i = _matchers(tokens, i, expr)
            out.selectors.append(Selector(text, tuple(matchers)))
            continue
        if kind == "open":
            depth.append(text)
        elif kind == "close":
            if not depth:
                raise PromQLError(f"unbalanced {text!r} in {expr!r}")
            depth.pop()
        elif kind == "matchop":
            raise PromQLError(f"matcher operator {text!r} outside a selector in {expr!r}")
        i += 1
    if depth:
        raise PromQLError(f"unclosed {depth[-1]!r} in {expr!r}")
    return out


# --- the Prometheus text format --------------------------------------------------------

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+\S+(\s+\S+)?$")
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def read_exposition(text: str) -> dict[str, dict[str, set[str]]]:
    """Sample name -> {label name -> values seen} for every sample line of ``text``
    (``_sum``/``_count``/``_bucket`` samples of summaries and histograms are their own
    names, exactly as PromQL sees them)."""
    series: dict[str, dict[str, set[str]]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise PromQLError(f"not a sample line: {line!r}")
        labels = series.setdefault(m.group(1), {})
        body = m.group(3) or ""
        pos = 0
        while pos < len(body):
            lm = _LABEL.match(body, pos)
            if not lm:
                raise PromQLError(f"cannot read the labels of {line!r}")
            labels.setdefault(lm.group(1), set()).add(lm.group(2))
            pos = lm.end()
    return series
