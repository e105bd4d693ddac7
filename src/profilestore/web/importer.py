"""Import from CSV: the wizard over the import API (upload, preview, mapping, mode, progress, summary)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
