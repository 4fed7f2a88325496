"""An item's journey as a readable timeline, built from verified records.

``identifiers(event)`` lists every GS1 identifier an EPCIS event names, with the same fields the
node indexes for ``GET /v1/items/{item}/history`` (docs/api.md): ``epcList``, ``parentID``,
``childEPCs``, ``inputEPCList``, ``outputEPCList``, the quantity lists' ``epcClass``,
``sourceList``/``destinationList`` entries, ``readPoint.id`` and ``bizLocation.id``. The client uses it
to check that a node's history answer only holds records that do name the item.

``timeline(records, item, genesis)`` turns records into ``Step``s: when, what happened (in words),
where, who recorded it, and at which height; ``render`` prints them with rich.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .format.epcis.items import event_identifiers

__all__ = ["Step", "describe", "identifiers", "render", "timeline"]

def identifiers(event: Any) -> set[str]:
    """Every GS1 identifier ``event`` names (``epcis.items``, the fields the node's history index uses)."""
    return set(event_identifiers(event))


def _last(uri: Any) -> str:
    """The readable tail of a CBV URI or term (``urn:epcglobal:cbv:bizstep:shipping`` -> ``shipping``)."""
    if not isinstance(uri, str):
        return ""
    for sep in ("#", "/", ":"):
        if sep in uri and uri.startswith(("urn:", "http://", "https://")):
            uri = uri.rsplit(sep, 1)[-1]
    return uri.replace("_", " ")


def describe(event: dict[str, Any], item: str | None = None) -> str:
    """One line saying what ``event`` did, from the point of view of ``item`` when given."""
    etype = event.get("type", "event")
    action = event.get("action", "")  # "" when absent: no verb, no match below
    step = _last(event.get("bizStep"))
    disp = _last(event.get("disposition"))
    parts: list[str] = []
    if etype == "AggregationEvent":
        parent = event.get("parentID", "?")
        children = len(event.get("childEPCs") or []) + len(event.get("childQuantityList") or [])
        if item is not None and item == parent:
            verb = {"ADD": "packed with", "DELETE": "unpacked of", "OBSERVE": "seen with"}.get(action, "with")
            parts.append(f"{verb} {children} item(s)")
        else:
            verb = {"ADD": "packed into", "DELETE": "unpacked from", "OBSERVE": "seen in"}.get(action, "in")
            parts.append(f"{verb} {parent}")
    elif etype == "TransformationEvent":
        if item is not None and item in (event.get("inputEPCList") or []):
            parts.append("consumed by a transformation")
        elif item is not None and item in (event.get("outputEPCList") or []):
            parts.append("produced by a transformation")
        else:
            parts.append("transformation")
    elif action == "ADD" and etype == "ObjectEvent":
        parts.append("commissioned" if step in ("", "commissioning") else f"{step} (added)")
    elif action == "DELETE":
        parts.append(f"{step or 'removed'} (deleted)")
    if step and not (etype == "ObjectEvent" and action == "ADD" and step == "commissioning"):
        parts.insert(0, step)
    if not parts:
        parts.append(etype)
    text = ": ".join(dict.fromkeys(parts))
    if disp:
        text += f" [{disp}]"
    return text


@dataclass(frozen=True, slots=True)
class Step:
    when: str  # the event's eventTime as recorded
    what: str
    where: str
    who: str  # member name (organisation) from the genesis, or the member id
    height: int
    record_id: str
    event: dict[str, Any]

    def to_obj(self) -> dict[str, Any]:
        return {"when": self.when, "what": self.what, "where": self.where, "who": self.who,
                "height": self.height, "record_id": self.record_id, "event": self.event}


def _where(event: dict[str, Any]) -> str:
    for key in ("bizLocation", "readPoint"):
        loc = event.get(key)
        if isinstance(loc, dict) and isinstance(loc.get("id"), str):
            return loc["id"]
    for s in event.get("destinationList") or ():
        if isinstance(s, dict) and isinstance(s.get("destination"), str):
            return "to " + s["destination"]
    return ""


def timeline(records: Iterable[Any], item: str | None = None, genesis: Any = None) -> list[Step]:
    """``Step``s for verified records (anything with ``event``, ``submitter``, ``height``, ``id``), in chain order."""
    steps: list[Step] = []
    for r in records:
        member = genesis.members.get(r.submitter) if genesis is not None else None
        who = f"{member.name} ({member.organisation})" if member and member.organisation != member.name else (
            member.name if member else r.submitter)
        ev = r.event
        steps.append(Step(str(ev.get("eventTime", "")), describe(ev, item), _where(ev), who, r.height, r.id.hex(), ev))
    return steps


def render(steps: Sequence[Step], item: str, console: Any = None) -> None:
    """Print the timeline as a table (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if not steps:
        console.print(f"no committed record names {item}")
        return
    table = Table(title=f"journey of {item}", title_justify="left")
    for col in ("#", "when", "what", "where", "recorded by", "block"):
        table.add_column(col, overflow="fold")
    for i, s in enumerate(steps, 1):
        table.add_row(str(i), s.when, s.what, s.where, s.who, str(s.height))
    console.print(table)


def to_json(steps: Sequence[Step], item: str) -> str:
    return json.dumps({"item": item, "steps": [s.to_obj() for s in steps]}, indent=2, ensure_ascii=False)
