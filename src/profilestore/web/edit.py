"""Add/Edit Profile (`/users/edit`): Mixpanel's "Select a Mode" form for user and group profiles.

Create refuses an id that has a profile already, update one that has none; properties are added (name, type,
value; the names the project's profiles use and Mixpanel's reserved ones are offered), edited and unset;
a profile is deleted after an "I understand" box is ticked.  Every change is one record built here and sent
through the ingestion pipeline, `ingest/pipeline.py` with `ProfileUpdates` (what /engage and /groups run):
the record's JSON text is decoded by the same reader (`decode.read_json`), carries the project's token, and
its failures come back as the field and the rule broken.  Typed values keep the text the user typed (a
number, a JSON list or object), so a number that would not be stored exactly is refused, as /engage
refuses it.  The page never writes SQL to the profile tables.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from profilestore.db.connections import connector, database
from profilestore.deps import PoolDep, SettingsDep, TokensDep
from profilestore.ingest.decode import read_json
from profilestore.ingest.pipeline import ingest
from profilestore.ingest.profiles.service import ProfileUpdates
from profilestore.query.profiles import editing
from profilestore.web.deps import FormDep, WebDep, context
from profilestore.web.edit_form import RESERVED, TYPES, EditForm, Problems, check, record_text, row_of, same
from profilestore.web.render import page

router = APIRouter(include_in_schema=False)


@dataclass
class Editor:
    """What the page's handlers share: the request, its project, the pools and the token cache."""

    request: Request
    web: WebDep
    pool: PoolDep
    settings: SettingsDep
    tokens: TokensDep

    async def current(self, form: EditForm) -> tuple[dict[str, Any] | None, str]:
        """The stored properties of the form's profile (None: no profile) and the project's token."""
        async with database(self.pool, self.settings) as conn:
            found = None
            if form.profile_id and (form.kind == "user" or form.group_key) and form.storable:
                found = await editing.stored(conn, self.web.project_id, form.profile_id, form.key)
            token = await editing.project_token(conn, self.web.project_id)
        return found, token or ""

    async def apply(self, form: EditForm, body: list[str], token: str, problems: Problems) -> None:
        """One record through the ingestion pipeline; its failures and warnings become problems."""
        text = record_text(form, token, body)
        kind = "group" if form.kind == "group" else "profile"
        async with database(self.pool, self.settings) as conn:
            before = await editing.last_warning_id(conn, self.web.project_id)
        outcome = await ingest(
            ProfileUpdates(self.settings, kind=kind),
            read_json(text),
            body_bytes=len(text),
            now=time.time(),
            tokens=self.tokens,
            connect=connector(self.pool, self.settings),
        )
        for failure in outcome.failures:
            path = failure.field
            if path in ("$distinct_id", "$group_id", "$group_key"):
                problems.add(
                    f"{path}: {failure.message}", field="group_key" if path == "$group_key" else "id"
                )
            elif "." in path:
                name, row = row_of(form, path)
                problems.add(f"{name}: {failure.message}", row)
            else:
                problems.add(f"{path or 'the change'}: {failure.message}")
        if outcome.failures:
            return
        entity = form.profile_id if kind == "profile" else f"{form.group_key}/{form.profile_id}"
        async with database(self.pool, self.settings) as conn:
            found = await editing.warnings_since(conn, self.web.project_id, before, kind, entity)
        for w in found:
            problems.add(f"{w['property']}: not stored: {w['reason']}")
        problems.applied = bool(found)

    async def render(
        self,
        form: EditForm,
        problems: Problems | None = None,
        *,
        notice: str | None = None,
        status: int = 200,
    ) -> Response:
        exists, _ = await self.current(form)
        async with database(self.pool, self.settings) as conn:
            names = await editing.property_names(conn, self.web.project_id, form.key if form.storable else "")
            keys = await editing.group_keys(conn, self.web.project_id)
        ctx = context(
            self.web,
            form=form,
            problems=problems or Problems(),
            notice=notice,
            exists=exists is not None,
            known=list(RESERVED.items()) + [(n, "") for n in names if n not in RESERVED],
            group_keys=keys,
            types=TYPES,
            next_index=max((r.index for r in form.rows), default=-1) + 1,
        )
        return page(self.request, "edit.html", ctx, status)


EditorDep = Annotated[Editor, Depends()]


def done_url(form: EditForm, done: str) -> str:
    """Where a successful change goes: this page, with its notice and a link to the profile page."""
    return "/users/edit?" + urlencode({**form.target(), "done": done})


@router.get("/users/edit")
async def edit_page(editor: EditorDep) -> Response:
    """The form, blank or filled with the stored profile `distinct_id` (or `group_key`, `group_id`) names."""
    q = editor.request.query_params
    kind = "group" if q.get("type") == "group" else "user"
    key = q.get("group_key", "").strip() if kind == "group" else ""
    profile_id = q.get("group_id" if kind == "group" else "distinct_id", "")
    stored, _ = await editor.current(EditForm(kind, key, profile_id))
    form = EditForm.of(kind, key, profile_id, stored)
    done = {"created": "Profile created.", "updated": "Changes saved."}.get(q.get("done", ""))
    notice = f"Profile {q['deleted']} deleted." if q.get("deleted") else done if stored is not None else None
    return await editor.render(form, notice=notice)


@router.post("/users/edit")
async def save(editor: EditorDep, form_data: FormDep) -> Response:
    form = EditForm.read(form_data)
    if form_data.get("action") == "add":  # "Add Property" without JavaScript: the form again, one more row
        form.blank()
        return await editor.render(form)
    problems = Problems()
    values = check(form, problems)
    if problems.messages:
        return await editor.render(form, problems, status=400)
    current, token = await editor.current(form)
    what = "group profile" if form.kind == "group" else "profile"
    if form.mode == "create" and current is not None:
        problems.add(
            f"A {what} with {form.id_field} {form.profile_id} exists already: nothing was changed. "
            "Choose “Update an existing profile” to change it.",
            field="id",
        )
        return await editor.render(form, problems, status=409)
    if form.mode == "update" and current is None:
        problems.add(
            f"No {what} has {form.id_field} {form.profile_id}: nothing was changed. "
            "Choose “Create a new profile” to create it.",
            field="id",
        )
        return await editor.render(form, problems, status=404)
    current = current or {}
    sets = {k: v for k, v in values.items() if k not in current or not same(current[k], v[0])}
    unsets = [r.name for r in form.rows if r.unset and r.name in current]
    if form.mode == "update" and not sets and not unsets:
        return await editor.render(form, notice="Nothing to change: the values are those stored.")
    body = ['"$set":{' + ",".join(f"{json.dumps(k)}:{text}" for k, (_, text) in sets.items()) + "}"]
    if unsets:
        body.append(f'"$unset":{json.dumps(unsets)}')
    await editor.apply(form, body, token, problems)
    if problems.applied:  # applied, but the profile's limits left some values out
        form.mode = "update"
        return await editor.render(form, problems)
    if problems.messages:
        return await editor.render(form, problems, status=400)
    return RedirectResponse(
        done_url(form, "created" if form.mode == "create" else "updated"), status_code=303
    )


@router.post("/users/edit/delete")
async def delete(editor: EditorDep, form_data: FormDep) -> Response:
    form = EditForm.read(form_data)
    problems = Problems()
    current, token = await editor.current(form)
    shown_form = EditForm.of(form.kind, form.group_key, form.profile_id, current)
    if current is None:
        what = "group profile" if form.kind == "group" else "profile"
        problems.add(f"No {what} has {form.id_field} {form.profile_id}: nothing to delete.", field="id")
        return await editor.render(shown_form, problems, status=404)
    if form_data.get("confirm") != "yes":
        problems.add("Tick “I understand” to delete the profile: nothing was deleted.", field="confirm")
        return await editor.render(shown_form, problems, status=400)
    await editor.apply(form, ['"$delete":""'], token, problems)
    if problems.messages:
        return await editor.render(shown_form, problems, status=400)
    target = {k: v for k, v in form.target().items() if k not in ("distinct_id", "group_id")}
    return RedirectResponse(
        "/users/edit?" + urlencode({**target, "deleted": form.profile_id}), status_code=303
    )
