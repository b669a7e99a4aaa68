"""The compiled expression interpreter against the scalar oracle (Expr.scalar)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from anju.kinds import KINDS
from anju.rules.expr import parse_expr
from anju.rules.program import Programs

KIND = KINDS["elevator"]
FIELDS = ("floor", "speed_mps", "door_open", "occupied")
VALUES = st.sampled_from((math.nan, 0.0, -0.0, 1.0, 2.0, -1.5, 0.3, math.inf, -math.inf, 13.0))

ATOMS = st.one_of(st.sampled_from(FIELDS), st.sampled_from(("0", "1", "0.3", "2", "-1", "true",
                                                            "false")))


def _compose(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    bin_ = st.tuples(inner, st.sampled_from(("+", "-", "*", "/")), inner).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})")
    cmp = st.tuples(inner, st.sampled_from(("<", "<=", ">", ">=", "==", "!=")), inner).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})")
    chain = st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} < {t[1]} <= {t[2]})")
    boolop = st.tuples(inner, st.sampled_from(("and", "or")), inner, inner).map(
        lambda t: f"({t[0]} {t[1]} {t[2]} {t[1]} {t[3]})")
    unary = st.tuples(st.sampled_from(("not ", "-", "abs")), inner).map(
        lambda t: f"abs({t[1]})" if t[0] == "abs" else f"({t[0]}{t[1]})")
    missing = st.tuples(inner, st.sampled_from(("is missing", "is not missing"))).map(
        lambda t: f"({t[0]} {t[1]})")
    return st.one_of(bin_, cmp, chain, boolop, unary, missing)


EXPRS = st.recursive(ATOMS, _compose, max_leaves=8)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) ==
                                                 math.copysign(1, b))


@settings(max_examples=300, deadline=None)
@given(sources=st.lists(EXPRS, min_size=1, max_size=4),
       rows=st.lists(st.tuples(*(VALUES for _ in FIELDS)), min_size=1, max_size=12))
def test_programs_agree_with_the_scalar_oracle(sources: list[str], rows: list[tuple[float, ...]]
                                               ) -> None:
    exprs = [parse_expr(s, KIND, {}) for s in sources]
    progs = Programs(FIELDS)
    values = [progs.add(e, test=False) for e in exprs]
    tests = [progs.add(e, test=True) for e in exprs]
    cols = np.ascontiguousarray(np.array(rows, np.float64).T)
    for e, pv, pt in zip(exprs, values, tests, strict=True):
        got_v, got_t = progs.evaluate(pv, cols), progs.evaluate(pt, cols)
        for i, row in enumerate(rows):
            env = dict(zip(FIELDS, row, strict=True))
            want = float(e.scalar(env))
            assert _same(float(got_v[i]), want), (e.source, row, got_v[i], want)
            assert got_t[i] == (1.0 if e.test_scalar(env) else 0.0), (e.source, row)


def test_a_window_and_a_param_are_columns_of_the_layout() -> None:
    e = parse_expr("wmax(speed_mps, 10) > 1.5 and floor < limit", KIND, {},
                   device_params=frozenset({"limit"}))
    progs = Programs(("floor", "speed_mps", "limit", "wmax(speed_mps,10)"))
    p = progs.add(e, test=True)
    cols = np.array([[1.0, 5.0, 1.0], [0.0, 0.0, 0.0], [3.0, 3.0, math.nan],
                     [2.0, 2.0, 2.0]])
    assert progs.evaluate(p, cols).tolist() == [1.0, 0.0, 0.0]
    assert progs.depth >= 2
