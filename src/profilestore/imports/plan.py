"""An import's options, and the plan they make of a file's header: the identifier and the property columns.

The identifier (docs/import.md): `id_column` if given; else the column that maps to `$distinct_id` (for
group profiles `$group_id`, or the column named like the group key); else, for user profiles, the `$email`
column (Mixpanel's rule); else a random UUID per row.  The identifier column is also stored as a property,
unless it maps to `$distinct_id` / `$group_id`.
"""

from __future__ import annotations

import codecs
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from profilestore.imports.columns import BadValue, Inference, Mapping, converter, parse_map, property_for
from profilestore.imports.reading import FileError, Problem, Row
from profilestore.settings import Settings

MAX_NAME = 255  # characters of an id, a property name or a group key, as on /engage
SHOWN = 40  # characters of a cell quoted in a warning


class PlanError(FileError):
    """Options that do not fit the file (an unknown column, two columns on one property...): nothing is
    imported; the command exits 2 (bad options) rather than 1."""


class ImportOptions(BaseModel):
    """What to import and how; the command's flags and the HTTP API's query parameters are these."""

    model_config = ConfigDict(extra="forbid")

    id_column: str | None = Field(None, description="the identifier column (default: see docs/import.md)")
    group_key: str | None = Field(
        None, min_length=1, max_length=MAX_NAME, description="import group profiles of this group key"
    )
    mode: Literal["create", "update", "upsert"] = "upsert"
    map: list[str] = Field(default_factory=list, description="COLUMN=PROPERTY or COLUMN=PROPERTY:TYPE")
    skip: list[str] = Field(default_factory=list, description="columns not imported")
    types: Literal["infer", "string"] = "infer"
    header: bool = True
    columns: list[str] | None = Field(None, description="the column names of a file without a header")
    delimiter: str | None = Field(None, description="one character (or \\t, tab); default: detected")
    encoding: str = "utf-8"
    cohort: str | None = Field(None, min_length=1, max_length=MAX_NAME, description="a static cohort's name")
    dry_run: bool = False

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value in ("\\t", "tab"):  # what a shell passes for `--delimiter '\t'`
            return "\t"
        if value is not None and (len(value) != 1 or value in '"\r\n'):
            raise ValueError("must be one character, not a quote or a line break")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None

    @field_validator("map")
    @classmethod
    def _maps(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_map(item)  # raises ValueError with the item's text
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ImportOptions:
        if not self.header and not self.columns:
            raise ValueError("a file without a header needs its column names (columns)")
        if self.cohort is not None and self.group_key is not None:
            raise ValueError("cohort: cohorts hold users; a group profile import cannot make one")
        return self


@dataclass
class Target:
    index: int
    header: str
    prop: str
    kind: str | None  # forced, or resolved by resolve_types
    convert: Callable[[str], Any] | None = None


@dataclass
class Plan:
    headers: list[str]
    targets: list[Target]
    id_index: int | None  # None: a random UUID per row
    id_rule: str  # how the identifier was chosen, for the summary
    kind: Literal["profile", "group"]
    notes: list[str] = field(default_factory=list)


def make_plan(headers: list[str], options: ImportOptions, settings: Settings) -> Plan:
    if len(headers) > settings.max_import_columns:
        raise PlanError(
            f"the file has {len(headers)} columns; at most {settings.max_import_columns} can be imported"
        )
    index_of: dict[str, int] = {}
    for i, name in enumerate(headers):
        index_of.setdefault(name.strip(), i)
    maps = dict(parse_map(item) for item in options.map)
    for name in [*maps, *options.skip, *([options.id_column] if options.id_column else [])]:
        if name not in index_of:
            raise PlanError(f"no column is named {name!r} (the columns: {', '.join(map(repr, headers))})")
    mapping = {i: maps.get(name.strip(), Mapping(property_for(name), None)) for i, name in enumerate(headers)}
    group = options.group_key is not None
    own_id = "$group_id" if group else "$distinct_id"

    id_index, rule = _identifier(headers, mapping, options, index_of, own_id)
    if id_index is not None and headers[id_index].strip() in options.skip:
        raise PlanError(f"column {headers[id_index]!r} is the identifier: it cannot be skipped")
    skipped = {index_of[name] for name in options.skip}
    targets: list[Target] = []
    by_prop: dict[str, str] = {}
    notes: list[str] = []
    for i, name in enumerate(headers):
        if i in skipped or (i == id_index and mapping[i].prop == own_id):
            continue
        if not name.strip():
            notes.append(f"column {i + 1} has no name: not imported")
            continue
        prop = mapping[i].prop
        if prop == "$last_seen":  # as on /engage, which ignores a $set of it
            notes.append(f"column {name!r} sets $last_seen, which the service maintains: not imported")
            continue
        if prop in ("$distinct_id", "$group_id"):
            raise PlanError(f"column {name!r}: only the identifier column can be {prop}")
        if len(prop) > MAX_NAME:
            raise PlanError(f"column {name!r}: property names are at most {MAX_NAME} characters")
        if prop in by_prop:
            raise PlanError(f"columns {by_prop[prop]!r} and {name!r} both set {prop!r}; --map or --skip one")
        by_prop[prop] = name
        targets.append(Target(i, name, prop, mapping[i].kind))
    return Plan(headers, targets, id_index, rule, "group" if group else "profile", notes)


def _identifier(
    headers: list[str],
    mapping: dict[int, Mapping],
    options: ImportOptions,
    index_of: dict[str, int],
    own_id: str,
) -> tuple[int | None, str]:
    if options.id_column is not None:
        return index_of[options.id_column], f"column {options.id_column!r}"
    for i, m in mapping.items():
        if m.prop == own_id:
            return i, f"column {headers[i]!r} ({own_id})"
    if options.group_key is not None:
        if options.group_key in index_of:
            return index_of[options.group_key], f"column {options.group_key!r} (the group key)"
        raise PlanError(
            "group profiles need an identifier column: id_column, a $group_id column, or one named like"
            " the group key"
        )
    for i, m in mapping.items():
        if m.prop == "$email":
            return i, f"column {headers[i]!r} ($email)"
    return None, "a random UUID per row (no identifier or $email column)"


def resolve_types(
    plan: Plan, options: ImportOptions, inference: Inference | None, settings: Settings
) -> None:
    """Each column's type: forced, else inferred (`infer`), else text; and its converter."""
    for target in plan.targets:
        if target.kind is None:
            target.kind = inference.type_of(target.index) if inference is not None else "string"
        target.convert = converter(target.kind, settings.max_value_depth, settings.max_import_cell_bytes)


def shown(text: str) -> str:
    """A cell as a warning quotes it: at most SHOWN characters."""
    return repr(text if len(text) <= SHOWN else text[:SHOWN] + "...")


class RowMaker:
    """A Row to (identifier, properties, warnings), or the Problem that skips it."""

    def __init__(self, plan: Plan, settings: Settings) -> None:
        self.headers = plan.headers
        self.width = len(plan.headers)
        self.id_index = plan.id_index
        self.id_name = "$group_id" if plan.kind == "group" else "$distinct_id"
        self.id_header = plan.headers[plan.id_index] if plan.id_index is not None else None
        self.targets = [(t.index, t.header, t.prop, t.convert) for t in plan.targets]
        self.phone = [(t.index, t.header) for t in plan.targets if t.prop == "$phone"]
        self.max_cell = settings.max_import_cell_bytes
        self.max_record = settings.max_record_bytes

    def make(self, row: Row) -> tuple[str, dict[str, Any], list[Problem]] | Problem:
        cells, line = row.cells, row.line
        if len(cells) != self.width:
            return Problem(
                line, "ragged", f"line {line}: {len(cells)} cells where the header has {self.width}; skipped"
            )
        size = sum(map(len, cells)) * 4  # a bound on the UTF-8 bytes of the row (4 a character at most)
        if size > self.max_cell:
            for i, text in enumerate(cells):
                if len(text.encode()) > self.max_cell:
                    header = self.headers[i]
                    return Problem(
                        line,
                        "too_large",
                        f"line {line}, column {header!r}: a cell over {self.max_cell} bytes; skipped",
                        header,
                    )
        if self.id_index is None:
            ident = str(uuid.uuid4())
        else:
            ident = cells[self.id_index]
            if not ident.strip():
                return Problem(
                    line,
                    "empty_id",
                    f"line {line}: the identifier ({self.id_header!r}) is empty; skipped",
                    self.id_header,
                )
            if len(ident) > MAX_NAME:
                return Problem(
                    line,
                    "bad_id",
                    f"line {line}: the identifier is over {MAX_NAME} characters; skipped",
                    self.id_header,
                )
        props: dict[str, Any] = {}
        for index, header, prop, convert in self.targets:
            text = cells[index]
            if not text:
                continue
            if convert is None:
                props[prop] = text
                continue
            try:
                props[prop] = convert(text)
            except BadValue as exc:
                return Problem(
                    line, "bad_value", f"line {line}, column {header!r}: {shown(text)} {exc}; skipped", header
                )
        if size > self.max_record and len(orjson.dumps(props)) > self.max_record:
            # /engage refuses an update this large; the import's own would go past a profile's limits
            return Problem(
                line, "too_large", f"line {line}: the row is over {self.max_record} bytes as JSON; skipped"
            )
        warnings: list[Problem] = []
        for index, header in self.phone:
            text = cells[index]
            if text and not text.startswith("+"):
                warnings.append(
                    Problem(
                        line,
                        "phone",
                        f"line {line}, column {header!r}: {shown(text)} has no leading '+' (an"
                        " international number needs one); imported as it is",
                        header,
                    )
                )
        return ident, props, warnings
