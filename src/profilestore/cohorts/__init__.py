"""Cohorts: definitions (schemas.py, legacy.py; paths.py for the paths their errors name), their compilation
to one SQL condition (compile.py), saved cohorts (service.py) and their HTTP routes (routes.py).

    cohort_condition(conn, project_id, spec, distinct_id=..., params=..., now=...)   the public interface
    parse_definition(value, path=...)                                                 JSON -> CohortDefinition
"""

from profilestore.cohorts.compile import Universe, cohort_condition, universe
from profilestore.cohorts.schemas import CohortDefinition, parse_definition

__all__ = ["CohortDefinition", "Universe", "cohort_condition", "parse_definition", "universe"]
