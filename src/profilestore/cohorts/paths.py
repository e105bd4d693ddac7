"""Paths into a definition, as error messages name them: `raw_cohort.filters[1].count.op`,
`behaviors.selector.children[0].operand`.  Its own module because schemas.py and legacy.py both build them
(and neither imports the other for it)."""

from __future__ import annotations


def join_path(prefix: str, path: str) -> str:
    """`("raw_cohort", "filters[1]")` -> `raw_cohort.filters[1]`; `("filters", "[1]")` -> `filters[1]`."""
    if not prefix:
        return path
    if not path:
        return prefix
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"
