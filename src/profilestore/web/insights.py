"""Insights: events over time, total or unique, broken down and filtered, as an SVG chart and a table."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
