"""Cohorts: the list with counts, open, rename, duplicate, delete; the filter builder and Save as cohort."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
