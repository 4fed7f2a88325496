"""The GS1 identifiers an EPCIS event names: one definition for the node's item index and the client's trace."""

from __future__ import annotations

from typing import Any

__all__ = ["event_identifiers"]

_EPC_LISTS = ("epcList", "childEPCs", "inputEPCList", "outputEPCList")
_QUANTITY_LISTS = ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList")


def event_identifiers(event: Any) -> list[str]:
    """Every GS1 identifier an EPCIS event names (docs/api.md, Items), without repeats, in a stable order:
    the item history index (the node) and ``rantai trace`` (the client) both follow these fields."""
    if not isinstance(event, dict):
        return []
    found: dict[str, None] = {}

    def add(v: Any) -> None:
        if isinstance(v, str) and v:
            found[v] = None

    add(event.get("parentID"))
    for key in _EPC_LISTS:
        for v in event.get(key) or ():
            add(v)
    for key in _QUANTITY_LISTS:
        for q in event.get(key) or ():
            if isinstance(q, dict):
                add(q.get("epcClass"))
    for key, field in (("sourceList", "source"), ("destinationList", "destination")):
        for s in event.get(key) or ():
            if isinstance(s, dict):
                add(s.get(field))
    for key in ("readPoint", "bizLocation"):
        loc = event.get(key)
        if isinstance(loc, dict):
            add(loc.get("id"))
    return list(found)
