"""Add/Edit Profile: create and update modes, properties added, edited and unset, deletion; group profiles."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
