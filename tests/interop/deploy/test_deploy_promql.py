"""The PromQL reader the deploy checks rely on (promql.py): it must find every metric a
query reads and nothing else, or the dashboard and alert checks would prove nothing."""

from __future__ import annotations

import pytest

from promql import PromQLError, Selector, parse, read_exposition


@pytest.mark.parametrize(
    "expr, names",
    [
        ("up", {"up"}),
        ('up{job="heliograph"} == 0', {"up"}),
        ("sum by (transport) (rate(heliograph_logins_total[5m]))", {"heliograph_logins_total"}),
        ("sum(rate(a_total[5m])) by (cause)", {"a_total"}),
        # Function names, aggregations and keywords are not metrics.
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))", {"x_bucket"}),
        ("topk(10, max by (backend, op) (s{quantile=\"0.99\"}))", {"s"}),
        ("a / on (instance) group_left (tenant) b", {"a", "b"}),
        ("a and b or c unless d", {"a", "b", "c", "d"}),
        ("a > bool 0.5", {"a"}),
        ("rate(a[5m] offset 1h)", {"a"}),
        ("max_over_time(deriv(a[10m])[1h:5m])", {"a"}),
        ("a @ start()", {"a"}),
        ("clamp_min(a, 1e-9) + Inf - NaN", {"a"}),
        ('{__name__="only_in_braces", job="x"}', {"only_in_braces"}),
        # Words that look like metrics inside strings, label lists and brackets are not.
        ('count(a{reason!~"draining|sum|rate"})', {"a"}),
        ("sum without (rate, sum) (a)", {"a"}),
        ("vector(0) or absent(b)", {"b"}),
        # Grafana variables anywhere.
        ('sum(rate(a{instance=~"$instance"}[$__rate_interval])) * $factor', {"a"}),
        ("# a comment naming not_a_metric\na", {"a"}),
    ],
)
def test_metric_names(expr, names):
    assert parse(expr).metric_names == names


def test_matchers_and_grouping_labels():
    p = parse('sum by (cause, transport) (rate(f{job="j", cause!="aborted", x=~"a.*"}[5m]))'
              ' / on(instance) g')
    assert p.selectors == [
        Selector("f", (("job", "=", "j"), ("cause", "!=", "aborted"), ("x", "=~", "a.*"))),
        Selector("g"),
    ]
    assert p.grouping_labels == {"cause", "transport", "instance"}


@pytest.mark.parametrize("expr, aggregated", [
    ("a", False), ("rate(a[5m])", False), ("topk(3, a)", False), ("sum(a)", True),
    ("sum by (x) (a)", True), ("max(a) by (x)", True), ("topk(3, sum by (x) (a))", True),
    ("a / on (x) b", False),
])
def test_aggregated(expr, aggregated):
    assert parse(expr).aggregated is aggregated


@pytest.mark.parametrize("expr", ["sum(a", "a)", "a{x=}", "a{x~\"y\"}", "rate(a[5m)", "a !~ b", "sum by x (a)", "a{x=\"y\"", "sum by (x (a)", "a{x"])
def test_malformed_expressions_are_refused(expr):
    with pytest.raises(PromQLError):
        parse(expr)


def test_read_exposition():
    text = """# TYPE s summary
s{op="a.b",quantile="0.5"} 0.1
s{op="a.b",quantile="0.99"} 0.2
s_sum{op="a.b"} 1
s_count{op="a.b"} 3
# TYPE g gauge
g 5
c_total{msg="with \\"quotes\\", and commas"} 7
"""
    series = read_exposition(text)
    assert set(series) == {"s", "s_sum", "s_count", "g", "c_total"}
    assert series["s"] == {"op": {"a.b"}, "quantile": {"0.5", "0.99"}}
    assert series["g"] == {}
    assert series["c_total"]["msg"] == {'with \\"quotes\\", and commas'}
