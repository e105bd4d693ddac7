"""Geolocation from `$ip` (docs/ingest.md section 3): the seam where a GeoIP lookup plugs in (a later issue).

`add_locations` is called by the service for every request; with no `Locator` configured (today) it does
nothing.  A locator maps an IP address to `$city`, `$region`, `$country_code`, `$timezone`; the client's own
values win, and the IP itself is never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from profilestore.ingest.records import Update


class Locator(Protocol):
    def locate(self, ip: str) -> Mapping[str, str] | None: ...


def add_locations(
    updates: list[Update], *, client_ip: str | None, use_client_ip: bool, locator: Locator | None
) -> None:
    """Adds the location of each update's `$ip` (or the client's address when `ip=1`) to its `$set`."""
    if locator is None:
        return
    for update in updates:
        body = update.body
        if "set" not in body and "once" not in body:
            continue
        ip = update.ip if update.ip is not None else (client_ip if use_client_ip else None)
        if not ip or ip == "0":
            continue
        location = locator.locate(ip)
        if location:
            body["set"] = {**location, **body.get("set", {})}
