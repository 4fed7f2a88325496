"""Builders for common EPCIS 2.0 events, so an SME need not know EPCIS by heart.

Each builder returns a plain ``dict`` (the JSON form of the event) that passes
:func:`rantai.client.format.epcis.validate_event` and GS1's official EPCIS 2.0 JSON
schema.  Times carry their local offset: ``when`` is a timezone-aware
``datetime``, or a naive one read in ``tz`` (default Asia/Jakarta, UTC+07:00),
or ``None`` for now.

Identifiers are EPC URIs (``urn:epc:id:...``) or GS1 Digital Link URIs; the
helpers :func:`sgtin`, :func:`sscc`, :func:`sgln`, :func:`pgln`, :func:`grai`,
:func:`giai`, :func:`gdti` and :func:`lgtin` write EPC URIs from a GS1 company
prefix and references, checking digit counts.

Example::

    items = [sgtin("8991234", "012345", s) for s in ("1001", "1002")]
    farm = sgln("8991234", "00001")
    ev = commission(items, biz_location=farm, lot="LOT7")
    box = sscc("8991234", "000000001", extension="1")
    ev2 = pack(box, items, biz_location=farm)
    ev3 = ship([box], source=pgln("8991234", "00000"), destination=pgln("8995678", "00000"),
               source_location=farm, po="PO-77")
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import quote

from .event_hash import epc_to_digital_link, event_hash_id
from .validate import gs1_check_digit, validate_event

__all__ = [
    "JAKARTA",
    "EPCIS_CONTEXT",
    "sgtin",
    "sscc",
    "sgln",
    "pgln",
    "grai",
    "giai",
    "gdti",
    "lgtin",
    "digital_link",
    "biz_transaction_id",
    "commission",
    "pack",
    "unpack",
    "ship",
    "receive",
    "transform",
    "sell",
    "epcis_document",
]

#: Asia/Jakarta (WIB): UTC+07:00 all year, no daylight saving time.
JAKARTA = timezone(timedelta(hours=7), "WIB")
#: The JSON-LD context of EPCIS 2.0 documents.
EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"

# ----------------------------------------------------------- GS1 EPC URIs


def _digits(name: str, value: Any, lo: int = 0, hi: int = 12) -> str:
    s = str(value)
    if not s.isdigit() and not (s == "" and lo == 0):
        raise ValueError(f"{name} must be digits, got {value!r}")
    if not lo <= len(s) <= hi:
        raise ValueError(f"{name} must have {lo}-{hi} digits, got {value!r}")
    return s


def _prefix(company_prefix: Any) -> str:
    return _digits("GS1 company prefix", company_prefix, 6, 12)


def _fit(name: str, cp: str, ref: Any, total: int) -> str:
    """``ref`` left-padded with zeros so that company prefix + reference has ``total`` digits."""
    r = _digits(name, ref, 0, total)
    need = total - len(cp)
    if len(r) > need:
        raise ValueError(f"{name} {ref!r} is too long: with company prefix {cp} it must have {need} digits")
    return r.zfill(need)


def _serial(value: Any, max_len: int = 20) -> str:
    s = str(value)
    if not 1 <= len(s) <= max_len:
        raise ValueError(f"serial must have 1-{max_len} characters, got {value!r}")
    # GS1 AI encodable characters; URI-reserved ones are percent-encoded
    allowed = set("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")
    bad = [c for c in s if c not in allowed]
    if bad:
        raise ValueError(f"serial {value!r} has characters GS1 does not allow: {''.join(bad)!r}")
    return quote(s, safe="!'()*+,-.:;=_")


def sgtin(company_prefix: Any, item_ref: Any, serial: Any) -> str:
    """A serialised trade item: ``urn:epc:id:sgtin:CompanyPrefix.ItemRef.Serial``.

    ``item_ref`` starts with the GTIN indicator digit; company prefix + item
    reference have 13 digits (``item_ref`` is zero-padded on the left).
    """
    cp = _prefix(company_prefix)
    return f"urn:epc:id:sgtin:{cp}.{_fit('item reference', cp, item_ref, 13)}.{_serial(serial)}"


def lgtin(company_prefix: Any, item_ref: Any, lot: Any) -> str:
    """A trade item class of one lot/batch: ``urn:epc:class:lgtin:CompanyPrefix.ItemRef.Lot``."""
    cp = _prefix(company_prefix)
    return f"urn:epc:class:lgtin:{cp}.{_fit('item reference', cp, item_ref, 13)}.{_serial(lot)}"


def sscc(company_prefix: Any, serial_ref: Any, extension: Any = "0") -> str:
    """A logistic unit (pallet, case): ``urn:epc:id:sscc:CompanyPrefix.SerialRef``.

    The extension digit comes first in SerialRef; company prefix + SerialRef
    have 17 digits (``serial_ref`` is zero-padded on the left).
    """
    cp = _prefix(company_prefix)
    ext = _digits("extension digit", extension, 1, 1)
    ref = _fit("serial reference", cp, serial_ref, 16)
    return f"urn:epc:id:sscc:{cp}.{ext}{ref}"


def sgln(company_prefix: Any, location_ref: Any = "", extension: Any = "0") -> str:
    """A location: ``urn:epc:id:sgln:CompanyPrefix.LocationRef.Extension`` (12 digits before the extension)."""
    cp = _prefix(company_prefix)
    return f"urn:epc:id:sgln:{cp}.{_fit('location reference', cp, location_ref, 12)}.{_serial(extension)}"


def pgln(company_prefix: Any, party_ref: Any = "") -> str:
    """A party (company, organisation): ``urn:epc:id:pgln:CompanyPrefix.PartyRef`` (12 digits)."""
    cp = _prefix(company_prefix)
    return f"urn:epc:id:pgln:{cp}.{_fit('party reference', cp, party_ref, 12)}"


def grai(company_prefix: Any, asset_type: Any, serial: Any) -> str:
    """A returnable asset (crate, pallet, container): ``urn:epc:id:grai:CompanyPrefix.AssetType.Serial``."""
    cp = _prefix(company_prefix)
    return f"urn:epc:id:grai:{cp}.{_fit('asset type', cp, asset_type, 12)}.{_serial(serial, 16)}"


def giai(company_prefix: Any, asset_ref: Any) -> str:
    """An individual asset (machine, sensor, vehicle): ``urn:epc:id:giai:CompanyPrefix.AssetRef``."""
    cp = _prefix(company_prefix)
    return f"urn:epc:id:giai:{cp}.{_serial(asset_ref, 30 - len(cp))}"


def gdti(company_prefix: Any, document_type: Any, serial: Any) -> str:
    """A document (invoice, certificate): ``urn:epc:id:gdti:CompanyPrefix.DocumentType.Serial``."""
    cp = _prefix(company_prefix)
    return f"urn:epc:id:gdti:{cp}.{_fit('document type', cp, document_type, 12)}.{_serial(serial, 17)}"


def digital_link(epc_uri: str) -> str:
    """The canonical GS1 Digital Link URI (``https://id.gs1.org/...``) of an EPC URI."""
    dl = epc_to_digital_link(epc_uri)
    if dl is None:
        raise ValueError(f"no GS1 Digital Link form for {epc_uri!r}")
    return dl


def _gln_of(uri: str) -> str | None:
    """The 13-digit GLN of a pgln/sgln EPC URI or a Digital Link 414/417 URI."""
    dl = epc_to_digital_link(uri) if uri.startswith("urn:epc:id:") else uri
    for key in ("/414/", "/417/"):
        if dl and key in dl:
            return dl.split(key, 1)[1][:13]
    return None


def biz_transaction_id(issuer: str, reference: Any) -> str:
    """A business transaction ID (``urn:epcglobal:cbv:bt:<GLN>:<reference>``) from the
    issuing party (a pgln/sgln EPC URI or a 13-digit GLN) and its own reference (e.g. PO number)."""
    gln = issuer if issuer.isdigit() and len(issuer) == 13 else _gln_of(issuer)
    if gln is None:
        raise ValueError(f"cannot find the GLN of {issuer!r}")
    if gs1_check_digit(gln[:12]) != int(gln[12]):
        raise ValueError(f"GLN {gln} has a wrong check digit")
    return f"urn:epcglobal:cbv:bt:{gln}:{quote(str(reference), safe='-._~')}"


# -------------------------------------------------------------- builders


def _time(when: datetime | None, tz: tzinfo | None) -> tuple[str, str]:
    if when is None:
        when = datetime.now(tz or JAKARTA)
    elif when.tzinfo is None or when.utcoffset() is None:
        when = when.replace(tzinfo=tz or JAKARTA)
    elif tz is not None:
        when = when.astimezone(tz)
    off = when.utcoffset() or timedelta(0)
    minutes = int(off.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    offset = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}" + offset
    return stamp, offset


def _quantities(items: Iterable[Any] | None) -> list[dict[str, Any]]:
    """(epc_class, quantity[, uom]) tuples or dicts -> quantity elements."""
    out = []
    for q in items or ():
        if isinstance(q, Mapping):
            out.append(dict(q))
            continue
        epc_class, quantity, *rest = q
        el: dict[str, Any] = {"epcClass": epc_class, "quantity": quantity}
        if rest and rest[0]:
            el["uom"] = rest[0]
        out.append(el)
    return out


def _ids(items: Iterable[str] | str | None) -> list[str]:
    if items is None:
        return []
    if isinstance(items, str):
        return [items]
    return list(items)


def _finish(
    event: dict[str, Any],
    *,
    read_point: str | None,
    biz_location: str | None,
    biz_transactions: Sequence[tuple[str, str]] | None = None,
    extensions: Mapping[str, Any] | None = None,
    event_id: bool | str = False,
) -> dict[str, Any]:
    if read_point:
        event["readPoint"] = {"id": read_point}
    if biz_location:
        event["bizLocation"] = {"id": biz_location}
    if biz_transactions:
        event["bizTransactionList"] = [
            {"type": t, "bizTransaction": b} if t else {"bizTransaction": b} for t, b in biz_transactions
        ]
    for k, v in (extensions or {}).items():
        event[k] = v
    if event_id is True:
        event["eventID"] = event_hash_id(event)
    elif event_id:
        event["eventID"] = event_id
    validate_event(event)
    return event


def _base(etype: str, when: datetime | None, tz: tzinfo | None) -> dict[str, Any]:
    stamp, offset = _time(when, tz)
    return {"type": etype, "eventTime": stamp, "eventTimeZoneOffset": offset}


def commission(
    epcs: Iterable[str] | None,
    biz_location: str,
    when: datetime | None = None,
    *,
    quantities: Iterable[Any] | None = None,
    read_point: str | None = None,
    lot: str | None = None,
    best_before: str | None = None,
    expiry: str | None = None,
    ilmd: Mapping[str, Any] | None = None,
    disposition: str = "active",
    tz: tzinfo | None = None,
    extensions: Mapping[str, Any] | None = None,
    event_id: bool | str = False,
) -> dict[str, Any]:
    """Items come into existence (are labelled): ObjectEvent ADD, bizStep ``commissioning``.

    ``lot``, ``best_before`` and ``expiry`` (dates ``YYYY-MM-DD``) go into the
    ILMD as CBV master data (``cbvmda:lotNumber``, ``cbvmda:bestBeforeDate``,
    ``cbvmda:itemExpirationDate``); ``ilmd`` adds namespaced fields of your own.
    """
    ev = _base("ObjectEvent", when, tz)
    ev["epcList"] = _ids(epcs)
    q = _quantities(quantities)
    if q:
        ev["quantityList"] = q
    ev.update(action="ADD", bizStep="commissioning", disposition=disposition)
    lot_data: dict[str, Any] = {}
    if lot is not None:
        lot_data["cbvmda:lotNumber"] = lot
    if best_before is not None:
        lot_data["cbvmda:bestBeforeDate"] = best_before
    if expiry is not None:
        lot_data["cbvmda:itemExpirationDate"] = expiry
    lot_data.update(ilmd or {})
    if lot_data:
        ev["ilmd"] = lot_data
    return _finish(ev, read_point=read_point or biz_location, biz_location=biz_location,
                   extensions=extensions, event_id=event_id)


def pack(
    parent: str,
    children: Iterable[str] | None,
    when: datetime | None = None,
    *,
    child_quantities: Iterable[Any] | None = None,
    biz_location: str | None = None,
    read_point: str | None = None,
    disposition: str | None = "in_progress",
    tz: tzinfo | None = None,
    extensions: Mapping[str, Any] | None = None,
    event_id: bool | str = False,
) -> dict[str, Any]:
    """Items packed into a case/pallet (``parent``, e.g. an SSCC): AggregationEvent ADD, bizStep ``packing``."""
    ev = _base("AggregationEvent", when, tz)
    ev["parentID"] = parent
    ev["childEPCs"] = _ids(children)
    q = _quantities(child_quantities)
    if q:
        ev["childQuantityList"] = q
    ev.update(action="ADD", bizStep="packing")
    if disposition:
        ev["disposition"] = disposition
    return _finish(ev, read_point=read_point or biz_location, biz_location=biz_location,
                   extensions=extensions, event_id=event_id)


def unpack(
    parent: str,
    children: Iterable[str] | None = None,
    when: datetime | None = None,
    *,
    biz_location: str | None = None,
    read_point: str | None = None,
    tz: tzinfo | None = None,
    extensions: Mapping[str, Any] | None = None,
    event_id: bool | str = False,
) -> dict[str, Any]:
    """Items taken out of a case/pallet: AggregationEvent DELETE, bizStep ``unpacking``
    (without ``children``: everything in it)."""
    ev = _base("AggregationEvent", when, tz)
    ev["parentID"] = parent
    kids = _ids(children)
    if kids:
        ev["childEPCs"] = kids
    ev.update(action="DELETE", bizStep="unpacking")
    return _finish(ev, read_point=read_point or biz_location, biz_location=biz_location,
                   extensions=extensions, event_id=event_id)


def _movement(
    bizstep: str,
    disposition: str,
    epcs: Iterable[str] | None,
    source: str | None,
    destination: str | None,
    when: datetime | None,
    *,
    source_location: str | None,
    destination_location: str | None,
    quantities: Iterable[Any] | None,
    read_point: str | None,
    biz_location: str | None,
    po: str | None,
    despatch_advice: str | None,
    biz_transactions: Sequence[tuple[str, str]] | None,
    tz: tzinfo | None,
    extensions: Mapping[str, Any] | None,
    event_id: bool | str,
) -> dict[str, Any]:
    ev = _base("ObjectEvent", when, tz)
    ev["epcList"] = _ids(epcs)
    q = _quantities(quantities)
    if q:
        ev["quantityList"] = q
    ev.update(action="OBSERVE", bizStep=bizstep, disposition=disposition)
    sources = [{"type": "owning_party", "source": source}] if source else []
    if source_location:
        sources.append({"type": "location", "source": source_location})
    dests = [{"type": "owning_party", "destination": destination}] if destination else []
    if destination_location:
        dests.append({"type": "location", "destination": destination_location})
    if sources:
        ev["sourceList"] = sources
    if dests:
        ev["destinationList"] = dests
    txs = list(biz_transactions or ())
    buyer = destination
    seller = source
    for kind, ref, issuer in (("po", po, buyer), ("desadv", despatch_advice, seller)):
        if ref is None:
            continue
        if ":" not in ref:  # a bare reference: qualify it with the issuing party's GLN
            if not issuer:
                raise ValueError(f"{kind} {ref!r} is not a URI and there is no party to qualify it with")
            ref = biz_transaction_id(issuer, ref)
        txs.append((kind, ref))
    return _finish(ev, read_point=read_point, biz_location=biz_location, biz_transactions=txs,
                   extensions=extensions, event_id=event_id)


def ship(
    epcs: Iterable[str] | None,
    source: str | None,
    destination: str | None,
    when: datetime | None = None,
    *,
    source_location: str | None = None,
    destination_location: str | None = None,
    quantities: Iterable[Any] | None = None,
    read_point: str | None = None,
    po: str | None = None,
    despatch_advice: str | None = None,
    biz_transactions: Sequence[tuple[str, str]] | None = None,
    tz: tzinfo | None = None,
    extensions: Mapping[str, Any] | None = None,
    event_id: bool | str = False,
) -> dict[str, Any]:
    """Goods leave: ObjectEvent OBSERVE, bizStep ``shipping``, disposition ``in_transit``.

    ``source``/``destination`` are the owning parties (pgln), ``source_location``/
    ``destination_location`` the places (sgln); ``read_point`` defaults to
    ``source_location``.  ``po`` (the buyer's purchase order) and
    ``despatch_advice`` (the seller's) may be URIs or bare references.
    """
    return _movement("shipping", "in_transit", epcs, source, destination, when,
                     source_location=source_location, destination_location=destination_location,
                     quantities=quantities, read_point=read_point or source_location, biz_location=None,
                     po=po, despatch_advice=despatch_advice, biz_transactions=biz_transactions, tz=tz,
                     extensions=extensions, event_id=event_id)


def receive(
    epcs: Iterable[str] | None,
    source: str | None,
    destination: str | None,
    when: datetime | None = None,
    *,
    source_location: str | None = None,
    destination_location: str | None = None,
    quantities: Iterable[Any] | None = None,
    read_point: str | None = None,
    biz_location: str | None = None,
    po: str | None = None,
    despatch_advice: str | None = None,
    biz_transactions: Sequence[tuple[str, str]] | None = None,
    disposition: str = "in_progress",
    tz: tzinfo | None = None,
    extensions: Mapping[str, Any] | None = None,
    event_id: bool | str = False,
) -> dict[str, Any]:
    """Goods arrive and are taken in: ObjectEvent OBSERVE, bizStep ``receiving``,
    disposition ``in_progress``; ``read_point`` and ``biz_location`` default to ``destination_location``."""
    loc = destination_location
    return _movement("receiving", disposition, epcs, source, destination, when,
                     source_location=source_location, destination_location=destination_location,
                     quantities=quantities, read_point=read_point or loc, biz_location=biz_location or loc,
                     po=po, despatch_advice=despatch_advice, biz_transactions=biz_transactions, tz=tz,
                     extensions=extensions, event_id=event_id)


def transform(
    inputs: Iterable[str] | None,
    outputs: Iterable[str] | None,
    when: datetime | None = None,
    *,
    input_quantities: Iterable[Any] | None = None,
    output_quantities: Iterable[Any] | None = None,
    transformation_id: str | None = None,
    biz_location: str | None = None,
    read_point: str | None = None,
    biz_step: str = "commissioning",
    disposition: str | None = "active",
    lot: str | None = None,
    ilmd: Mapping[str, Any] | None = None,
    tz: tzinfo | None = None,
    extensions: Mapping[str, Any] | None = None,
    event_id: bool | str = False,
) -> dict[str, Any]:
    """Inputs consumed to make outputs (milling, roasting, mixing): TransformationEvent.

    Inputs and outputs are EPCs (``inputs``/``outputs``) and/or quantities
    (``(epc_class, quantity, uom)``); ``lot``/``ilmd`` describe the outputs.
    """
    ev = _base("TransformationEvent", when, tz)
    for key, ids in (("inputEPCList", inputs), ("outputEPCList", outputs)):
        lst = _ids(ids)
        if lst:
            ev[key] = lst
    for key, qs in (("inputQuantityList", input_quantities), ("outputQuantityList", output_quantities)):
        q = _quantities(qs)
        if q:
            ev[key] = q
    if transformation_id:
        ev["transformationID"] = transformation_id
    ev["bizStep"] = biz_step
    if disposition:
        ev["disposition"] = disposition
    data: dict[str, Any] = {"cbvmda:lotNumber": lot} if lot is not None else {}
    data.update(ilmd or {})
    if data:
        ev["ilmd"] = data
    return _finish(ev, read_point=read_point or biz_location, biz_location=biz_location,
                   extensions=extensions, event_id=event_id)


def sell(
    epcs: Iterable[str] | None,
    when: datetime | None = None,
    *,
    biz_location: str | None = None,
    read_point: str | None = None,
    quantities: Iterable[Any] | None = None,
    tz: tzinfo | None = None,
    extensions: Mapping[str, Any] | None = None,
    event_id: bool | str = False,
) -> dict[str, Any]:
    """Items sold to a consumer at a shop: ObjectEvent OBSERVE, bizStep ``retail_selling``,
    disposition ``retail_sold``."""
    ev = _base("ObjectEvent", when, tz)
    ev["epcList"] = _ids(epcs)
    q = _quantities(quantities)
    if q:
        ev["quantityList"] = q
    ev.update(action="OBSERVE", bizStep="retail_selling", disposition="retail_sold")
    return _finish(ev, read_point=read_point or biz_location, biz_location=biz_location,
                   extensions=extensions, event_id=event_id)


def epcis_document(events: Iterable[Mapping[str, Any]], *, created: datetime | None = None,
                   context: Sequence[Any] | None = None, tz: tzinfo | None = None) -> dict[str, Any]:
    """Wrap events in an EPCISDocument (JSON-LD) for sharing with partners or EPCIS tools.

    ``context`` adds JSON-LD context entries (e.g. ``{"ex": "https://ns.example.co.id/epcis/"}``
    for extension prefixes) after the standard EPCIS context.
    """
    stamp, _ = _time(created, tz)
    return {
        "@context": [EPCIS_CONTEXT, *(context or [])],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": stamp,
        "epcisBody": {"eventList": [dict(e) for e in events]},
    }
