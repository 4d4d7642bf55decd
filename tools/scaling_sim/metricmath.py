"""A small evaluator for the CloudWatch metric math the scaling policy deploys, so the simulator computes the
metric from the policy's own expression rather than from a copy of it.

Supported: numbers, metric ids, + - * /, one comparison (< <= > >= == !=, giving 1 or 0), IF(cond, a, b),
FILL(metric, value) and CEIL(value). A missing metric (None) makes the datapoint missing unless FILL supplies a value.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from functools import cache

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_COMPARE: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


class MetricMathError(ValueError):
    """An expression uses something this evaluator (and the simulator) does not model."""


@cache
def _parse(expression: str) -> ast.expr:
    try:
        return ast.parse(expression, mode="eval").body
    except SyntaxError as err:
        raise MetricMathError(f"cannot parse metric math {expression!r}: {err.msg}") from None


def evaluate(expression: str, values: Mapping[str, float | None]) -> float | None:
    """The value of `expression` given one datapoint per metric id; None when a needed metric is missing."""
    return _eval(_parse(expression), values)


def evaluate_spec(
    expression: str, parts: Sequence[tuple[str, str]], values: Mapping[str, float | None]
) -> float | None:
    """`expression` after its named parts, each evaluated in order and usable by the later ones by name."""
    scope = dict(values)
    for name, part in parts:
        scope[name] = evaluate(part, scope)
    return evaluate(expression, scope)


def _eval(node: ast.expr, values: Mapping[str, float | None]) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id not in values:
            raise MetricMathError(f"unknown metric id {node.id!r}")
        return values[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _eval(node.operand, values)
        return None if inner is None else -inner
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, values), _eval(node.right, values)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Div) and right == 0:
            return None  # CloudWatch drops the datapoint rather than returning infinity
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        left, right = _eval(node.left, values), _eval(node.comparators[0], values)
        if left is None or right is None:
            return None
        return 1.0 if _COMPARE[type(node.ops[0])](left, right) else 0.0
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _call(node.func.id, node.args, values)
    raise MetricMathError(f"unsupported metric math: {ast.unparse(node)!r}")


def _call(name: str, args: list[ast.expr], values: Mapping[str, float | None]) -> float | None:
    if name == "IF" and len(args) == 3:
        condition = _eval(args[0], values)
        if condition is None:
            return None
        # Only the branch taken is evaluated, so IF(tasks < 1, 1, tasks) guards a division.
        return _eval(args[1] if condition != 0 else args[2], values)
    if name == "FILL" and len(args) == 2:
        value = _eval(args[0], values)
        return _eval(args[1], values) if value is None else value
    if name == "CEIL" and len(args) == 1:
        value = _eval(args[0], values)
        return None if value is None else float(math.ceil(value))
    raise MetricMathError(f"unsupported metric math function {name}({len(args)} arguments)")
