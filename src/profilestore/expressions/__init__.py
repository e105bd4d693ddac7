"""The expression language of `where`, cohort filters and event filters (docs/expressions.md).

    parse(text) -> Node                      grammar.lark + parser.py: the typed AST (ast.py)
    compile_where / compile_value            sql.py: parameterised SQL over a Scope (scope.py)
    evaluate / truthy                        evaluate.py, values.py: the same semantics in plain Python

Its own package because the read API (query/) and cohorts (cohorts/) both compile it.
"""

from profilestore.expressions.ast import Node
from profilestore.expressions.errors import ExpressionError
from profilestore.expressions.evaluate import evaluate
from profilestore.expressions.parser import parse
from profilestore.expressions.scope import Scope, Source, SqlParams
from profilestore.expressions.sql import compile_value, compile_where
from profilestore.expressions.values import UNDEFINED, truthy

__all__ = [
    "UNDEFINED",
    "ExpressionError",
    "Node",
    "Scope",
    "Source",
    "SqlParams",
    "compile_value",
    "compile_where",
    "evaluate",
    "parse",
    "truthy",
]
