"""The geolocation seam: where a locator's answer goes, and when it is not asked."""

from __future__ import annotations

from collections.abc import Mapping

from profilestore.ingest.geo import add_locations
from profilestore.ingest.records import Update


class TableLocator:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def locate(self, ip: str) -> Mapping[str, str] | None:
        self.asked.append(ip)
        return {"$city": "Berlin", "$country_code": "DE"} if ip.startswith("1.") else None


def update(body: dict[str, object], ip: str | None = None) -> Update:
    return Update(0, "token", "u1", {"t": 1.0, **body}, ip=ip)


def test_location_is_added_and_client_values_win() -> None:
    locator = TableLocator()
    updates = [update({"set": {"$city": "Paris"}}, ip="1.2.3.4"), update({"once": {"a": 1}}, ip="1.1.1.1")]
    add_locations(updates, client_ip="9.9.9.9", use_client_ip=True, locator=locator)
    assert updates[0].body["set"] == {"$city": "Paris", "$country_code": "DE"}
    assert updates[1].body["set"] == {"$city": "Berlin", "$country_code": "DE"}


def test_not_asked_for_ip_0_without_set_or_when_ip_param_is_0() -> None:
    locator = TableLocator()
    updates = [update({"set": {"a": 1}}, ip="0"), update({"unset": ["a"]}, ip="1.2.3.4"), update({"set": {}})]
    add_locations(updates, client_ip="1.5.5.5", use_client_ip=False, locator=locator)
    assert locator.asked == []
    add_locations([update({"set": {}})], client_ip="1.5.5.5", use_client_ip=True, locator=locator)
    assert locator.asked == ["1.5.5.5"]
    add_locations(updates, client_ip="1.5.5.5", use_client_ip=True, locator=None)  # no locator: nothing
