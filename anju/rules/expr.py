"""A small, safe expression language for rule conditions.

Conditions are Python expression syntax parsed with :mod:`ast` and checked against a
whitelist: comparisons (chained too), ``and``/``or``/``not``, ``+ - * /``, unary minus,
``abs(x)``, ``x is missing`` / ``x is not missing``, ``true``/``false``, string constants
compared with enum fields, and windowed features over a device's own trailing readings:
``slope(field, seconds)`` (least-squares, per second), ``wmax``, ``wmin``, ``count`` and
``span`` (seconds covered), and ``count_if(condition, seconds)``: how many of them the
condition held on (bursts: five refused cards at one door within a minute). Names are
the kind's fields, its registry params and the rule's own parameters. Nothing is ever
``eval``-ed.

One parsed tree has two evaluators: :meth:`Expr.scalar` interprets it on one reading with
plain Python floats — the reference engine's oracle; :mod:`anju.rules.program` compiles it
into a program of the compiled interpreter that the engine's pass of a kind runs (state,
event, schedule and ``count_if`` conditions, tiers, outputs). NaN means "not measured" in
both.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from anju.devices.spec import KindSpec
from anju.errors import RuleError

__all__ = ["CONDITION_WINDOW_FUNCS", "WINDOW_FUNCS", "Expr", "Window", "parse_expr", "window_of"]

WINDOW_FUNCS = ("slope", "wmax", "wmin", "count", "span")
#: Window functions over a condition rather than a field: ``count_if(condition, seconds)``.
CONDITION_WINDOW_FUNCS = ("count_if",)
MAX_WINDOW_S = 3600.0

_CMP_PY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


@dataclass(frozen=True, slots=True)
class Window:
    """A windowed feature: ``func`` over ``field`` in the trailing ``seconds``.

    For ``count_if``, ``field`` names the condition (its checked source) and ``where`` is
    the condition itself: the engines compute it per reading as a 0/1 column under that
    name, and the window sums it.
    """

    func: str
    field: str
    seconds: float
    where: Expr | None = dataclasses.field(default=None, compare=False, hash=False)

    def value_scalar(self, env: Mapping[str, Any]) -> float:
        """The value of one reading the window reads: the field, or 1.0/0.0 where the
        condition holds."""
        if self.where is None:
            return float(env[self.field])
        return 1.0 if self.where.test_scalar(env) else 0.0

    @property
    def key(self) -> str:
        return f"{self.func}({self.field},{self.seconds:g})"


def _div(a: float, b: float) -> float:
    # IEEE semantics, as numpy gives them, instead of ZeroDivisionError.
    try:
        return a / b
    except ZeroDivisionError:
        if math.isnan(a) or a == 0:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _truth(x: Any) -> bool:
    """A scalar operand used as a condition: booleans as they are, numbers true when 1."""
    if isinstance(x, bool):
        return x
    return bool(x == 1.0)


class Expr:
    """A validated expression over one kind's readings."""

    def __init__(self, source: str, tree: ast.expr, fields: frozenset[str],
                 required: frozenset[str], windows: tuple[Window, ...],
                 params: frozenset[str] = frozenset()) -> None:
        self.source = source
        self.tree = tree
        self.fields = fields  # every field it reads
        self.required = required  # fields that must be measured for it to mean anything
        self.windows = windows
        self.params = params  # registry params it reads
        self._compiled_py: Callable[[Mapping[str, Any]], Any] | None = None
        #: every column name it reads: fields, registry params and window keys
        self.names = fields | params | frozenset(w.key for w in windows)

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"

    # -- as a condition ----------------------------------------------------------------
    def test_scalar(self, env: Mapping[str, Any]) -> bool:
        """The expression as a condition on one reading (NaN is false)."""
        return _truth(self.scalar(env))

    # -- scalar (the oracle) -------------------------------------------------------------
    def scalar(self, env: Mapping[str, Any]) -> Any:
        """Evaluates on one reading: ``env`` maps names (and window keys) to floats."""
        fn = self._compiled_py
        if fn is None:
            fn = self._compiled_py = _compile_py(self.tree)
        return fn(env)


def _compile_py(node: ast.expr) -> Callable[[Mapping[str, Any]], Any]:
    """Compiles a validated tree once into closures over plain Python floats.

    Same semantics as the numpy closures, written the obvious way: ``and``/``or`` see
    every operand as true only when it is 1 (or True), comparisons with NaN are false,
    ``x / 0`` is ±inf or NaN as IEEE says.
    """
    if isinstance(node, ast.Constant):
        value = node.value
        return lambda e: value
    if isinstance(node, ast.Name):
        name = node.id
        return lambda e: e[name]
    if isinstance(node, ast.BoolOp):
        parts = [_compile_py(v) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda e: all([_truth(p(e)) for p in parts])
        return lambda e: any([_truth(p(e)) for p in parts])
    if isinstance(node, ast.UnaryOp):
        inner = _compile_py(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda e: not _truth(inner(e))
        return lambda e: -inner(e)
    if isinstance(node, ast.BinOp):
        left, right = _compile_py(node.left), _compile_py(node.right)
        arith = {"+": operator.add, "-": operator.sub, "*": operator.mul,
                 "/": _div}[_ARITH[type(node.op)]]
        return lambda e: arith(left(e), right(e))
    if isinstance(node, ast.Compare):
        if isinstance(node.ops[0], ast.Is | ast.IsNot):
            inner = _compile_py(node.left)
            if isinstance(node.ops[0], ast.Is):
                return lambda e: math.isnan(inner(e))
            return lambda e: not math.isnan(inner(e))
        operands = [_compile_py(x) for x in (node.left, *node.comparators)]
        cmps = [_CMP_PY[type(op)] for op in node.ops]

        def compare(e: Mapping[str, Any]) -> bool:
            left = operands[0](e)
            for cmp, operand in zip(cmps, operands[1:], strict=True):
                right = operand(e)
                if not cmp(left, right):
                    return False
                left = right
            return True
        return compare
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        if node.func.id == "abs":
            inner = _compile_py(node.args[0])
            return lambda e: abs(inner(e))
        key = window_of(node).key
        return lambda e: e[key]
    raise AssertionError(ast.dump(node))  # unreachable: validated at parse time


def window_of(node: ast.Call) -> Window:
    assert isinstance(node.func, ast.Name)
    arg = node.args[0]
    secs = node.args[1]
    assert isinstance(secs, ast.Constant)
    if node.func.id in CONDITION_WINDOW_FUNCS:  # keyed by the condition's checked source
        return Window(node.func.id, ast.unparse(arg), float(secs.value))  # type: ignore[arg-type]
    assert isinstance(arg, ast.Name)
    return Window(node.func.id, arg.id, float(secs.value))  # type: ignore[arg-type]


def parse_expr(source: str, kind: KindSpec, params: Mapping[str, float], *,
               file: str = "<rules>", rule: str | None = None,
               device_params: frozenset[str] = frozenset()) -> Expr:
    """Parses and validates ``source``; rule parameters are folded in as constants.

    Raises :class:`RuleError` naming the file, the rule and the offending token.
    """
    def fail(problem: str, token: str | None = None) -> RuleError:
        return RuleError(file, rule, f"condition {source!r}: {problem}", token)

    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        bad = (exc.text or source)[max(0, (exc.offset or 1) - 1):][:20]
        raise fail(f"syntax error ({exc.msg})", bad) from None

    fields: set[str] = set()
    required: set[str] = set()
    windows: list[Window] = []
    used_params: set[str] = set()
    enum_fields = {f.name: f for f in kind.fields if f.type == "enum"}
    col_fields = {f.name for f in kind.columns}
    track_fields = {f.name for f in kind.fields if f.type == "track"}

    def walk(node: ast.expr, in_missing: bool = False) -> ast.expr:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float | str):
                raise fail("only numbers and quoted enum values are allowed", repr(node.value))
            return ast.Constant(float(node.value)) if not isinstance(node.value, str) else node
        if isinstance(node, ast.Name):
            name = node.id
            if name in ("true", "false"):
                return ast.Constant(1.0 if name == "true" else 0.0)
            if name in col_fields:
                fields.add(name)
                if not in_missing:
                    required.add(name)
                return node
            if name in track_fields:
                raise fail("a track cannot be used in a condition", name)
            if name in params:
                return ast.Constant(float(params[name]))
            if name in device_params or name in {p.name for p in kind.params}:
                used_params.add(name)
                return node
            raise fail(f"unknown name (fields of {kind.name}: {', '.join(sorted(col_fields))})",
                       name)
        if isinstance(node, ast.BoolOp):
            return ast.BoolOp(node.op, [walk(v) for v in node.values])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
            return ast.UnaryOp(node.op, walk(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            return ast.BinOp(walk(node.left), node.op, walk(node.right))
        if isinstance(node, ast.Compare):
            if any(isinstance(op, ast.Is | ast.IsNot) for op in node.ops):
                if len(node.ops) != 1 or not (isinstance(node.comparators[0], ast.Name)
                                              and node.comparators[0].id == "missing"):
                    raise fail("'is' is only allowed as 'x is missing' / 'x is not missing'",
                               "is")
                return ast.Compare(walk(node.left, in_missing=True), node.ops,
                                   node.comparators)
            for op in node.ops:
                if type(op) not in _CMP_PY:
                    raise fail("unsupported comparison", type(op).__name__)
            # enum comparisons: field == "value" becomes a comparison of codes
            operands = [node.left, *node.comparators]
            enum_f = next((enum_fields[o.id] for o in operands
                           if isinstance(o, ast.Name) and o.id in enum_fields), None)
            new_ops: list[ast.expr] = []
            for o in operands:
                if isinstance(o, ast.Constant) and isinstance(o.value, str):
                    if enum_f is None or o.value not in enum_f.choices:
                        raise fail("a string constant must be one of an enum field's values",
                                   o.value)
                    new_ops.append(ast.Constant(float(enum_f.choices.index(o.value))))
                else:
                    new_ops.append(walk(o))
            return ast.Compare(new_ops[0], node.ops, new_ops[1:])
        if isinstance(node, ast.Call):
            fname = node.func.id if isinstance(node.func, ast.Name) else None
            if node.keywords or fname is None:
                raise fail("unsupported call", ast.unparse(node.func))
            if fname == "abs":
                if len(node.args) != 1:
                    raise fail("abs takes one argument", "abs")
                return ast.Call(node.func, [walk(node.args[0])], [])
            if fname in CONDITION_WINDOW_FUNCS:
                return count_if(node, fname)
            if fname in WINDOW_FUNCS:
                if len(node.args) != 2 or not isinstance(node.args[0], ast.Name) \
                        or node.args[0].id not in col_fields:
                    raise fail(f"{fname}(field, seconds) takes a field of {kind.name}", fname)
                secs = window_seconds(node)
                f = node.args[0].id
                fields.add(f)
                required.add(f)
                w = Window(fname, f, secs)
                if w not in windows:
                    windows.append(w)
                return ast.Call(node.func, [ast.Name(f), ast.Constant(secs)], [])
            raise fail("unknown function", fname)
        raise fail("unsupported syntax", ast.unparse(node)[:40])

    def window_seconds(node: ast.Call) -> float:
        arg = node.args[1]
        if isinstance(arg, ast.Name) and arg.id in params:
            arg = ast.Constant(float(params[arg.id]))
        if not isinstance(arg, ast.Constant) or not isinstance(arg.value, int | float) \
                or isinstance(arg.value, bool) or not 0 < float(arg.value) <= MAX_WINDOW_S:
            raise fail(f"window length must be a number of seconds in (0, "
                       f"{MAX_WINDOW_S:g}]", ast.unparse(node.args[1]))
        return float(arg.value)

    def count_if(node: ast.Call, fname: str) -> ast.expr:
        """``count_if(condition, seconds)``: the condition is checked like any other, but
        a reading it cannot judge (a field not measured) simply does not count, so its
        fields do not make the rule's own reading invalid."""
        if len(node.args) != 2:
            raise fail(f"{fname}(condition, seconds) takes a condition and a window", fname)
        secs = window_seconds(node)
        before_required = set(required)
        before_windows = len(windows)
        cond = walk(node.args[0])
        if len(windows) != before_windows:
            raise fail(f"{fname}'s condition cannot use another window", fname)
        if not _reads_field(cond, col_fields):
            raise fail(f"{fname}'s condition must read a field of {kind.name}", fname)
        required.clear()
        required.update(before_required)
        sub = Expr(ast.unparse(cond), cond, frozenset(), frozenset(), ())
        w = Window(fname, ast.unparse(cond), secs, where=sub)
        if w not in windows:
            windows.append(w)
        return ast.Call(ast.Name(fname), [cond, ast.Constant(secs)], [])

    checked = walk(tree)
    return Expr(source, checked, frozenset(fields), frozenset(required), tuple(windows),
                frozenset(used_params))


def _reads_field(tree: ast.expr, col_fields: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in col_fields for n in ast.walk(tree))
