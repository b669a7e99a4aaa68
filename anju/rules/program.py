"""Expressions as programs for one compiled interpreter: a kind's rules in one call.

Each :class:`~anju.rules.expr.Expr` of a kind compiles to a few postfix instructions over
the rows of a column matrix (fields, registry params, window features: one row each, a
column per reading). One compiled loop (numba) runs them a whole vector at a time, so the
compiled state and event passes evaluate every rule of a kind without going back to
Python. The numpy closures cost ~2 µs an operation on a batch of 100 readings, most of a
small batch's cost once the run machinery was compiled; one instruction here costs the
length of its vector.

Semantics are the scalar reference engine's (:meth:`Expr.scalar`): every value is a
float, comparisons give 1.0 or 0.0 (false with NaN), ``and``/``or``/``not`` see an operand
as true only when it is 1, ``x / 0`` is ±inf or NaN as IEEE says. A condition program ends
in ``TRUTH`` (1.0 exactly where the condition holds).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from anju.rules.expr import Expr, window_of
from anju.rules.jit import compiled

__all__ = ["Conditions", "Programs", "holds", "measured", "run_program"]

# instruction codes (an instruction is two int64s: code, argument)
LOAD, CONST = 0, 1  # push a column (its row) / a constant (its index)
NEG, ABS, NOT, ISNAN, NOTNAN, TRUTH = 2, 3, 4, 5, 6, 7  # on the top of the stack
ADD, SUB, MUL, DIV = 8, 9, 10, 11  # on the two top entries
LT, LE, GT, GE, EQ, NE = 12, 13, 14, 15, 16, 17
AND, OR = 18, 19
CMP_CONST = 20  # top <op> constant: argument is op * 2**32 + constant index (x > 0.2)
# -0.0 to 0.0: the oracle's bools are Python ints, whose zero has no sign (-(a < b) is 0,
# and 1 / 0 is +inf, not -inf)
INTZ = 21

_BIN = {ast.Add: ADD, ast.Sub: SUB, ast.Mult: MUL, ast.Div: DIV}
_CMP = {ast.Lt: LT, ast.LtE: LE, ast.Gt: GT, ast.GtE: GE, ast.Eq: EQ, ast.NotEq: NE}


class Programs:
    """Programs over one column layout (names in row order), built once per rule set."""

    def __init__(self, layout: Sequence[str]) -> None:
        self.layout = tuple(layout)
        self._row = {name: i for i, name in enumerate(self.layout)}
        self._code: list[int] = []
        self._consts: list[float] = []
        self._const_at: dict[float, int] = {}
        self._bounds: list[tuple[int, int]] = []
        self._depth = 1
        self._frozen: tuple[np.ndarray, ...] | None = None

    def add(self, expr: Expr, *, test: bool) -> int:
        """Compiles ``expr`` (``test``: as a condition, 1.0 where it holds); its index."""
        lo = len(self._code)
        self._depth = max(self._depth, self._emit(expr.tree, 0)[0] + 1)
        if test:
            self._op(TRUTH)
        self._bounds.append((lo, len(self._code)))
        self._frozen = None
        return len(self._bounds) - 1

    def row(self, name: str) -> int:
        return self._row[name]

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        """``(code, lo, hi, consts)``: what the compiled loops take."""
        if self._frozen is None:
            lo, hi = zip(*self._bounds, strict=True) if self._bounds else ((), ())
            self._frozen = (np.array(self._code, np.int64), np.array(lo, np.int64),
                            np.array(hi, np.int64), np.array([*self._consts, 0.0], np.float64))
        return self._frozen

    @property
    def depth(self) -> int:
        """Stack rows the programs need."""
        return self._depth

    def evaluate(self, program: int, cols: np.ndarray) -> np.ndarray:
        """One program over a column matrix (layout rows × readings)."""
        code, lo, hi, consts = self.arrays
        out = np.empty(cols.shape[1])
        run_program(code, int(lo[program]), int(hi[program]), consts, cols,
                    np.empty((self._depth, cols.shape[1])), out)
        return out

    # -- compiling ---------------------------------------------------------------------
    def _op(self, op: int, arg: int = 0) -> None:
        self._code += (op, arg)

    def _const(self, value: float) -> int:
        key = float(value)
        at = self._const_at.get(key)
        if at is None or np.isnan(key):
            at = self._const_at[key] = len(self._consts)
            self._consts.append(key)
        return at

    def _emit(self, node: ast.expr, sp: int) -> tuple[int, bool]:
        """Emits ``node`` onto a stack of ``sp`` entries: the highest stack index used, and
        whether the oracle computes it as a Python int (a bool, or +, -, * of them)."""
        if isinstance(node, ast.Constant):
            self._op(CONST, self._const(node.value))  # type: ignore[arg-type]
            return sp, False
        if isinstance(node, ast.Name):
            self._op(LOAD, self._row[node.id])
            return sp, False
        if isinstance(node, ast.BoolOp):
            top, _ = self._emit(node.values[0], sp)
            for v in node.values[1:]:
                top = max(top, self._emit(v, sp + 1)[0])
                self._op(AND if isinstance(node.op, ast.And) else OR)
            return top, True
        if isinstance(node, ast.UnaryOp):
            top, is_int = self._emit(node.operand, sp)
            if isinstance(node.op, ast.Not):
                self._op(NOT)
                return top, True
            self._op(NEG)
            if is_int:
                self._op(INTZ)
            return top, is_int
        if isinstance(node, ast.BinOp):
            top, li = self._emit(node.left, sp)
            rtop, ri = self._emit(node.right, sp + 1)
            op = _BIN[type(node.op)]
            self._op(op)
            is_int = li and ri and op != DIV
            if is_int and op == MUL:
                self._op(INTZ)
            return max(top, rtop), is_int
        if isinstance(node, ast.Compare):
            if isinstance(node.ops[0], ast.Is | ast.IsNot):
                top, _ = self._emit(node.left, sp)
                self._op(ISNAN if isinstance(node.ops[0], ast.Is) else NOTNAN)
                return top, True
            # a < b < c is (a < b) and (b < c), b evaluated twice (it has no side effects)
            operands = [node.left, *node.comparators]
            top = sp
            for j, cmp_op in enumerate(node.ops):
                code = _CMP[type(cmp_op)]
                at = sp if j == 0 else sp + 1
                top = max(top, self._emit(operands[j], at)[0])
                right = operands[j + 1]
                if isinstance(right, ast.Constant):
                    self._op(CMP_CONST, (code << 32) | self._const(right.value))  # type: ignore[arg-type]
                else:
                    top = max(top, self._emit(right, at + 1)[0])
                    self._op(code)
                if j:
                    self._op(AND)
            return top, True
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            if node.func.id == "abs":
                top, is_int = self._emit(node.args[0], sp)
                self._op(ABS)
                return top, is_int
            self._op(LOAD, self._row[window_of(node).key])
            return sp, False
        raise AssertionError(ast.dump(node))  # unreachable: validated at parse time


@dataclass(frozen=True)
class Conditions:
    """Conditions as programs (``prog``, one a rule), each with the layout rows of the
    fields it requires measured: ``rows[lo[r]:hi[r]]``, for :func:`measured`."""

    prog: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    rows: np.ndarray

    @classmethod
    def of(cls, programs: Programs, exprs: Sequence[Expr | None]) -> Conditions:
        prog: list[int] = []
        lo: list[int] = []
        hi: list[int] = []
        rows: list[int] = []
        for e in exprs:
            assert e is not None, "a state or event rule has a condition"
            prog.append(programs.add(e, test=True))
            lo.append(len(rows))
            rows += sorted(programs.row(f) for f in e.required)
            hi.append(len(rows))
        return cls(*(np.array(x, np.int64) for x in (prog, lo, hi, rows)))


@compiled("void(f8[:, ::1], i8[::1], i8, i8, b1[::1])")
def measured(cols: Any, rows: Any, lo: Any, hi: Any, out: Any) -> None:  # pragma: no cover
    """Which readings have every field of ``rows[lo:hi]`` measured (not NaN)."""
    out[:] = True
    for j in range(lo, hi):
        col = cols[rows[j]]
        for i in range(len(out)):
            if np.isnan(col[i]):
                out[i] = False


@compiled("void(f8[::1], i8, f8, i8)")
def _compare(x: Any, cmp: Any, c: Any, n: Any) -> None:  # pragma: no cover  (compiled)
    if cmp == LT:
        for i in range(n):
            x[i] = 1.0 if x[i] < c else 0.0
    elif cmp == LE:
        for i in range(n):
            x[i] = 1.0 if x[i] <= c else 0.0
    elif cmp == GT:
        for i in range(n):
            x[i] = 1.0 if x[i] > c else 0.0
    elif cmp == GE:
        for i in range(n):
            x[i] = 1.0 if x[i] >= c else 0.0
    elif cmp == EQ:
        for i in range(n):
            x[i] = 1.0 if x[i] == c else 0.0
    else:
        for i in range(n):
            x[i] = 1.0 if x[i] != c else 0.0


@compiled("void(f8[::1], i8, f8[::1], i8)")
def _compare_rows(x: Any, cmp: Any, y: Any, n: Any) -> None:  # pragma: no cover  (compiled)
    if cmp == LT:
        for i in range(n):
            x[i] = 1.0 if x[i] < y[i] else 0.0
    elif cmp == LE:
        for i in range(n):
            x[i] = 1.0 if x[i] <= y[i] else 0.0
    elif cmp == GT:
        for i in range(n):
            x[i] = 1.0 if x[i] > y[i] else 0.0
    elif cmp == GE:
        for i in range(n):
            x[i] = 1.0 if x[i] >= y[i] else 0.0
    elif cmp == EQ:
        for i in range(n):
            x[i] = 1.0 if x[i] == y[i] else 0.0
    else:
        for i in range(n):
            x[i] = 1.0 if x[i] != y[i] else 0.0


@compiled("void(i8[::1], i8, i8, f8[::1], f8[:, ::1], f8[:, ::1], f8[::1])", ieee=True)
def run_program(code: Any, lo: Any, hi: Any, consts: Any, cols: Any, stack: Any, out: Any
                ) -> None:  # pragma: no cover  (compiled: tests hold it to Expr.scalar)
    """Runs the program ``code[lo:hi]`` over the columns ``cols``; its value into ``out``."""
    n = out.shape[0]
    sp = 0
    for pc in range(lo, hi, 2):
        op = code[pc]
        a = code[pc + 1]
        if op == LOAD:
            for i in range(n):
                stack[sp, i] = cols[a, i]
            sp += 1
        elif op == CONST:
            c = consts[a]
            for i in range(n):
                stack[sp, i] = c
            sp += 1
        elif op == CMP_CONST:
            _compare(stack[sp - 1], a >> 32, consts[a & 0xFFFFFFFF], n)
        elif op < ADD or op == INTZ:
            x = stack[sp - 1]
            # one loop per operation: a test inside the loop would be paid on every value
            if op == NEG:
                for i in range(n):
                    x[i] = -x[i]
            elif op == ABS:
                for i in range(n):
                    x[i] = abs(x[i])
            elif op == NOT:
                for i in range(n):
                    x[i] = 0.0 if x[i] == 1.0 else 1.0
            elif op == ISNAN:
                for i in range(n):
                    x[i] = 1.0 if np.isnan(x[i]) else 0.0
            elif op == NOTNAN:
                for i in range(n):
                    x[i] = 0.0 if np.isnan(x[i]) else 1.0
            elif op == TRUTH:
                for i in range(n):
                    x[i] = 1.0 if x[i] == 1.0 else 0.0
            else:  # INTZ
                for i in range(n):
                    x[i] = x[i] + 0.0
        else:
            sp -= 1
            x = stack[sp - 1]
            y = stack[sp]
            if op == ADD:
                for i in range(n):
                    x[i] = x[i] + y[i]
            elif op == SUB:
                for i in range(n):
                    x[i] = x[i] - y[i]
            elif op == MUL:
                for i in range(n):
                    x[i] = x[i] * y[i]
            elif op == DIV:
                for i in range(n):
                    x[i] = x[i] / y[i]
            elif op == AND:
                for i in range(n):
                    x[i] = 1.0 if x[i] == 1.0 and y[i] == 1.0 else 0.0
            elif op == OR:
                for i in range(n):
                    x[i] = 1.0 if x[i] == 1.0 or y[i] == 1.0 else 0.0
            else:
                _compare_rows(x, op, y, n)
    for i in range(n):
        out[i] = stack[0, i]


@compiled("void(i8[::1], i8[::1], i8[::1], f8[::1], f8[:, ::1], f8[:, ::1], i8[::1], i8[::1],"
          " i8[::1], i8[::1], i8, f8[::1], b1[::1])", ieee=True)
def holds(code: Any, lo: Any, hi: Any, consts: Any, cols: Any, stack: Any, cond_p: Any,
          req_lo: Any, req_hi: Any, req_rows: Any, r: Any, out: Any, valid: Any
          ) -> None:  # pragma: no cover  (compiled)
    """1.0 where condition ``r`` of a :class:`Conditions` table holds and every field it
    requires is measured, else 0.0 (``valid``: scratch) — an event's hit, a check-in."""
    p = cond_p[r]
    run_program(code, lo[p], hi[p], consts, cols, stack, out)
    measured(cols, req_rows, req_lo[r], req_hi[r], valid)
    for i in range(len(out)):
        if not valid[i]:
            out[i] = 0.0
