"""The one error of the expression language: a 400 naming where the text went wrong and what was expected."""

from __future__ import annotations

from profilestore.errors import BadRequest


class ExpressionError(BadRequest):
    """A `where` (or cohort/event filter) the service cannot use: syntax, unknown function, wrong arity,
    a string it cannot store (NUL, lone surrogate), too long or too deeply nested."""
