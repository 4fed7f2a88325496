"""The CSV template SMEs fill in (a spreadsheet saved as CSV) as EPCIS events: ship, receive, commission,
pack, transform (docs/epcis.md §4.7).

Why here and not in client/format: validators and auditors only ever see the JSON events; a CSV row is
user input, turned into an event by the builders of ``format.epcis`` (which validate it), so each rule
still lives once. GS1 identifiers as people have them — a barcode's element string ``(01)…(21)…``, a GLN,
an SSCC, a GS1 Digital Link URI, an EPC URI — are read and check-digit-verified by ``biip``, a maintained
GS1 library, not by more hand-written code here.

``csv_events(text, tz)`` returns one ``Row`` per data line: its event, or the error that names the line,
the column and the rule (``line 7, column items: gs1: Invalid GTIN check digit …``). A bad line never
stops the others.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .format.epcis import builders

__all__ = ["COLUMNS", "EVENTS", "Row", "RowError", "csv_events", "gs1_identifier"]

EVENTS = ("ship", "receive", "commission", "pack", "transform")
#: column -> what it holds (the template's documentation, also used to refuse unknown columns)
COLUMNS: dict[str, str] = {
    "event": "ship, receive, commission, pack or transform",
    "time": "when it happened: 2024-05-01T08:30:00+07:00, or without offset (read in --tz, default UTC)",
    "items": "the objects (pack: the contents; transform: the inputs), separated by spaces",
    "outputs": "transform: what was made",
    "container": "pack: the case or pallet (SSCC)",
    "class": "a quantity's product class: (01)GTIN, with (10)LOT for a lot",
    "quantity": "how much of class (a number)",
    "uom": "the quantity's unit (UN/CEFACT code: KGM, LTR, H87 …)",
    "output_class": "transform: the output quantity's class",
    "output_quantity": "transform: how much was made",
    "output_uom": "transform: its unit",
    "location": "where (GLN, or sgln URI): commission, pack, transform, and receive's place",
    "from": "ship/receive: the place the goods leave (GLN)",
    "to": "ship/receive: the place the goods go to (GLN)",
    "from_party": "ship/receive: the owning party that sends (GLN)",
    "to_party": "ship/receive: the owning party that receives (GLN)",
    "po": "ship/receive: the buyer's purchase order reference",
    "lot": "commission/transform: the lot number of what was made",
}


class RowError(ValueError):
    """A CSV line that cannot become an event: ``line``, ``column`` (or None for the whole line), ``rule``."""

    def __init__(self, line: int, column: str | None, rule: str, detail: str) -> None:
        self.line, self.column, self.rule, self.detail = line, column, rule, detail
        where = f"line {line}" + (f", column {column}" if column else "")
        super().__init__(f"{where}: {rule}: {detail}")


@dataclass
class Row:
    line: int
    event: dict[str, Any] | None
    error: RowError | None = None


# -- identifiers (biip) ------------------------------------------------------------------------------

def gs1_identifier(text: str, kind: str = "item") -> str:
    """An identifier as the event writes it. ``kind`` says how a bare number reads: ``item`` (18 digits:
    an SSCC), ``location`` (13 digits: a GLN, AI 414) or ``party`` (13 digits: a party GLN, AI 417).

    EPC URIs (``urn:epc:…``) and other URIs pass through (``validate_event`` checks their structure); a GS1
    Digital Link URI, an element string ``(01)…(21)…`` or its barcode form, a GLN or an SSCC is parsed
    and check-digit-verified by biip. Raises ``ValueError`` naming what is wrong.
    """
    from biip import ParseError
    from biip.gln import Gln
    from biip.gs1_digital_link_uris import GS1DigitalLinkURI
    from biip.gs1_messages import GS1Message
    from biip.sscc import Sscc

    t = text.strip()
    if not t:
        raise ValueError("empty identifier")
    try:
        if t.startswith(("https://", "http://")):
            uri = GS1DigitalLinkURI.parse(t)
            _check_elements(uri.element_strings)
            return t
        if ":" in t.split("/", 1)[0]:  # urn:epc:id:…, or another URI scheme
            return t
        if t.isdigit() and len(t) == 13 and kind in ("location", "party"):
            gln = Gln.parse(t)
            return f"https://id.gs1.org/{'414' if kind == 'location' else '417'}/{gln.value}"
        if t.isdigit() and len(t) == 18:
            return f"https://id.gs1.org/00/{Sscc.parse(t).value}"
        message = GS1Message.parse_hri(t) if t.startswith("(") else GS1Message.parse(t)
        _check_elements(message.element_strings)
        return str(message.as_gs1_digital_link_uri().value)
    except ParseError as exc:
        raise ValueError(str(exc)) from None


def _check_elements(elements: Any) -> None:
    for e in elements:
        for err in (e.gtin_error, e.gln_error, e.sscc_error):
            if err:
                raise ValueError(err)


# -- rows -> events ----------------------------------------------------------------------------------

def _time(text: str, tz: _dt.tzinfo) -> _dt.datetime:
    t = text.strip()
    try:
        at = _dt.datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{t!r} is not an ISO 8601 time (2024-05-01T08:30:00+07:00)") from None
    return at.replace(tzinfo=tz) if at.tzinfo is None else at


class _Line:
    """One data line's cells, read column by column, each failure naming its column."""

    def __init__(self, line: int, cells: dict[str, str]) -> None:
        self.line, self.cells = line, cells

    def get(self, column: str) -> str | None:
        v = (self.cells.get(column) or "").strip()
        return v or None

    def need(self, column: str, why: str) -> str:
        v = self.get(column)
        if v is None:
            raise RowError(self.line, column, "required", why)
        return v

    def ids(self, column: str, kind: str = "item") -> list[str]:
        v = self.get(column)
        if v is None:
            return []
        out = []
        for part in v.replace("|", " ").split():
            try:
                out.append(gs1_identifier(part, kind))
            except ValueError as exc:
                raise RowError(self.line, column, "gs1", f"{part}: {exc}") from None
        return out

    def one(self, column: str, kind: str) -> str | None:
        got = self.ids(column, kind)
        if len(got) > 1:
            raise RowError(self.line, column, "one value", f"one identifier expected, got {len(got)}")
        return got[0] if got else None

    def quantities(self, prefix: str = "") -> list[tuple[str, float | int, str | None]]:
        cls, qty, uom = (f"{prefix}class", f"{prefix}quantity", f"{prefix}uom")
        if self.get(cls) is None and self.get(qty) is None:
            return []
        epc_class = self.one(cls, "item")
        if epc_class is None:
            raise RowError(self.line, cls, "required", f"{qty} needs the product class it counts")
        text = self.need(qty, f"{cls} needs a {qty}")
        try:
            number: float | int = int(text) if text.isdigit() else float(text)
        except ValueError:
            raise RowError(self.line, qty, "number", f"{text!r} is not a number") from None
        return [(epc_class, number, self.get(uom))]


def _ship_or_receive(build: Callable[..., dict[str, Any]], r: _Line, when: _dt.datetime,
                     receive: bool) -> dict[str, Any]:
    items, quantities = r.ids("items"), r.quantities()
    if not items and not quantities:
        raise RowError(r.line, "items", "required", "what moves: items, or class and quantity")
    kw: dict[str, Any] = {"source_location": r.one("from", "location"),
                          "destination_location": r.one("to", "location"),
                          "quantities": quantities or None, "po": r.get("po")}
    if receive and r.get("location"):
        kw["biz_location"] = r.one("location", "location")
    return build(items or None, r.one("from_party", "party"), r.one("to_party", "party"), when, **kw)


def _event(r: _Line, tz: _dt.tzinfo) -> dict[str, Any]:
    kind = r.need("event", f"one of {', '.join(EVENTS)}").lower()
    if kind not in EVENTS:
        raise RowError(r.line, "event", "event type", f"{kind!r}: one of {', '.join(EVENTS)} expected")
    try:
        when = _time(r.need("time", "when it happened"), tz)
    except ValueError as exc:
        raise RowError(r.line, "time", "time", str(exc)) from None
    if kind in ("ship", "receive"):
        build = builders.ship if kind == "ship" else builders.receive
        return _ship_or_receive(build, r, when, kind == "receive")
    location = r.one("location", "location")
    if kind == "commission":
        items, quantities = r.ids("items"), r.quantities()
        if not items and not quantities:
            raise RowError(r.line, "items", "required", "what was made: items, or class and quantity")
        if location is None:
            raise RowError(r.line, "location", "required", "where it was made (GLN)")
        return builders.commission(items or None, location, when, quantities=quantities or None, lot=r.get("lot"))
    if kind == "pack":
        parent = r.one("container", "item")
        if parent is None:
            raise RowError(r.line, "container", "required", "the case or pallet packed (SSCC)")
        items, quantities = r.ids("items"), r.quantities()
        if not items and not quantities:
            raise RowError(r.line, "items", "required", "what was packed: items, or class and quantity")
        return builders.pack(parent, items or None, when, child_quantities=quantities or None, biz_location=location)
    inputs, outputs = r.ids("items"), r.ids("outputs")
    in_q, out_q = r.quantities(), r.quantities("output_")
    if not (inputs or in_q):
        raise RowError(r.line, "items", "required", "what was used: items, or class and quantity")
    if not (outputs or out_q):
        raise RowError(r.line, "outputs", "required", "what was made: outputs, or output_class and output_quantity")
    return builders.transform(inputs or None, outputs or None, when, input_quantities=in_q or None,
                              output_quantities=out_q or None, biz_location=location, lot=r.get("lot"))


# the columns an event's fields come from, to name the column of a builder's refusal
_FIELD_COLUMN = {"epcList": "items", "childEPCs": "items", "inputEPCList": "items", "outputEPCList": "outputs",
                 "parentID": "container", "quantityList": "class", "childQuantityList": "class",
                 "inputQuantityList": "class", "outputQuantityList": "output_class", "bizLocation": "location",
                 "readPoint": "from", "sourceList": "from_party", "destinationList": "to_party",
                 "bizTransactionList": "po", "eventTime": "time", "ilmd": "lot"}


def csv_events(text: str, tz: _dt.tzinfo = _dt.timezone.utc) -> list[Row]:
    """Every data line of a CSV in the template (a header line first), as an event or an error."""
    if text.startswith("\ufeff"):  # spreadsheets save UTF-8 with a byte-order mark
        text = text[1:]
    sample = text[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    header = next(reader, None)
    if not header:
        return [Row(1, None, RowError(1, None, "header", "the first line names the columns (event,time,items,…)"))]
    names = [h.strip().lower() for h in header]
    unknown = [h for h in names if h and h not in COLUMNS]
    if unknown or "event" not in names:
        what = f"unknown column {unknown[0]!r}" if unknown else "no 'event' column"
        return [Row(1, None, RowError(1, unknown[0] if unknown else None, "header",
                                      f"{what} (columns: {', '.join(COLUMNS)})"))]
    rows: list[Row] = []
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(names):
            rows.append(Row(line, None, RowError(line, None, "columns",
                                                 f"{len(cells)} cells, the header names {len(names)}")))
            continue
        r = _Line(line, dict(zip(names, cells, strict=False)))
        try:
            rows.append(Row(line, _event(r, tz)))
        except RowError as exc:
            rows.append(Row(line, None, exc))
        except ValueError as exc:  # a builder's refusal (EventInvalid, or a bad GLN in a PO)
            path = getattr(exc, "path", "")
            field = path.split(".", 1)[1].split("[", 1)[0].split(".", 1)[0] if path.startswith("event.") else ""
            rule = getattr(exc, "rule", "event")
            detail = getattr(exc, "reason", None) or str(exc)
            rows.append(Row(line, None, RowError(line, _FIELD_COLUMN.get(field), rule, f"{path}: {detail}"
                                                 if path else detail)))
    return rows
