"""EPCIS documents in and out of a rantai ledger: ``rantai import``, ``rantai export``, capture and query.

* :func:`prepare_events` — the events of an EPCISDocument (or EPCISQueryDocument), each with the
  document's JSON-LD prefixes carried into its own ``@context`` (so its hash ID is the same inside and
  outside the document), each validated alone;
* :class:`DocumentClient` — signs and submits events in batches (``import_events``), reports per event
  ``recorded`` / ``duplicate`` / ``rejected`` (with the reason) / ``accepted`` (not committed in time);
  queries ``GET /epcis/events`` page by page and verifies every receipt (``query``); exports an
  EPCISDocument with the receipts that prove it (``export``); captures a signed document
  (``capture``, ``capture_job``);
* :func:`sign_document` — the document with a ``rantai:signature`` on every event, for ``POST /epcis/capture``;
* the ``rantai import`` and ``rantai export`` commands (registered with ``client.cli.register``).

Nothing a node answers is trusted: each exported or queried event comes with a receipt verified
against the genesis, and the event served must be the signed one (plus ``recordTime``, and the
hash ID as ``eventID`` when the event declares none).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx

from .format.encoding import decode, encode
from .format.epcis import document_events, event_hash_id, validate_event
from .format.epcis.builders import EPCIS_CONTEXT
from .format.epcis.event_hash import timestamp_us as parse_time_us
from .format.errors import ConfigError, InvalidRecord, NodeError, RantaiError, VerificationError
from .format.genesis import Genesis
from .format.keys import Signer
from .format.receipts import Receipt
from .format.records import SignedRecord, sign_event

__all__ = ["DocumentClient", "Outcome", "load_events", "prepare_events", "sign_document", "export_document",
           "served_event", "validate_xsd", "import_command", "export_command"]

MSGPACK = "application/msgpack"
SIGNATURE_KEY = "rantai:signature"
RANTAI_NS = "urn:rantai:"


# -- events of a document ------------------------------------------------------------------------------

def _context_dicts(context: Any) -> list[dict[str, Any]]:
    if isinstance(context, dict):
        return [context]
    if isinstance(context, list):
        return [c for x in context for c in _context_dicts(x)]
    return []


def embed_context(event: dict[str, Any], doc_context: Any) -> dict[str, Any]:
    """``event`` with the document's prefix definitions in its own ``@context`` (none needed: unchanged).

    The event's own context stays last, so it still wins, exactly as inside the document.
    """
    outer = _context_dicts(doc_context)
    if not outer:
        return event
    own = event.get("@context")
    own_list = [] if own is None else (own if isinstance(own, list) else [own])
    return {**event, "@context": [*outer, *own_list]}


@dataclass
class Prepared:
    index: int
    event: dict[str, Any] | None
    hash_id: str | None
    error: str | None = None
    line: int | None = None  # the CSV line it came from


def prepare_events(doc: Any) -> list[Prepared]:
    """Every event of ``doc`` ready to sign (context embedded, validated), or the reason it cannot be.

    ``doc`` is an EPCISDocument (or EPCISQueryDocument), a JSON list of events, or one event: what
    ``rantai submit`` and ``rantai import`` both take.
    """
    if isinstance(doc, list):
        events, ctx = doc, None
    elif isinstance(doc, dict) and "epcisBody" not in doc and doc.get("type") not in ("EPCISDocument",
                                                                                      "EPCISQueryDocument"):
        events, ctx = [doc], None
    else:
        events = document_events(doc)
        ctx = doc.get("@context") if isinstance(doc, dict) else None
    out = []
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            out.append(Prepared(i, None, None, "schema: event: a JSON object expected"))
            continue
        try:
            validate_event(ev, f"eventList[{i}]")
        except ValueError as exc:
            out.append(Prepared(i, None, None, str(exc)))
            continue
        full = embed_context(ev, ctx)
        out.append(Prepared(i, full, event_hash_id(full)))
    return out


def validate_xsd(data: bytes, xsd_dir: Path) -> None:
    """Check an XML document against the EPCIS XSDs in ``xsd_dir`` (``EPCglobal-epcis-2_0.xsd`` and what it
    imports; GS1 publishes them, rantai does not ship them). ``InvalidRecord`` names the line and the XSD's
    complaint. Nothing is fetched: imports resolve inside ``xsd_dir``."""
    from lxml import etree

    from .format.epcis.xml import parse_xml

    main = xsd_dir / "EPCglobal-epcis-2_0.xsd"
    if not main.is_file():
        raise ConfigError(f"xsd: {main} not found (--xsd names the folder holding GS1's EPCIS 2.0 XSD files)")
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    try:
        schema = etree.XMLSchema(etree.parse(str(main), parser))
    except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise ConfigError(f"xsd: {main}: {exc}") from None
    root = parse_xml(data)
    if not schema.validate(root):
        err = schema.error_log.last_error
        raise InvalidRecord(f"xsd: line {err.line}: {err.message}", rule="xsd", line=err.line)


def load_events(path: str | Path, *, tz: Any = None, xsd_dir: str | Path | None = None) -> list[Prepared]:
    """The events of a file as ``import`` and ``submit`` read it: an EPCIS XML document (``.xml``, or
    content starting with ``<``), a CSV in the template (``.csv``; rows without offset read in ``tz``,
    default UTC), or JSON (an EPCISDocument, a list of events, or one event). Each event is prepared
    (validated, hash ID computed) or carries the reason it cannot be; a file that cannot be read at all
    raises ``InvalidRecord`` (``ConfigError`` when it cannot be opened)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read it ({exc.strerror})") from None
    suffix = p.suffix.lower()
    if suffix == ".csv":
        from datetime import timezone as _tz

        from .csv_events import csv_events

        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRecord(f"{p}: not UTF-8 text ({exc}); save the spreadsheet as CSV UTF-8") from None
        out = []
        for i, row in enumerate(csv_events(text, tz or _tz.utc)):
            if row.event is None:
                out.append(Prepared(i, None, None, str(row.error), line=row.line))
            else:
                out.append(Prepared(i, row.event, event_hash_id(row.event), line=row.line))
        return out
    if suffix == ".xml" or data.lstrip()[:1] == b"<":
        from .format.epcis.xml import xml_document

        if xsd_dir is not None:
            validate_xsd(data, Path(xsd_dir))
        return prepare_events(xml_document(data))
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRecord(f"{p}: not JSON ({exc}); import reads EPCIS JSON(-LD), XML (.xml) and CSV (.csv)") from None
    return prepare_events(doc)


def sign_document(doc: dict[str, Any], signer: Signer, genesis: Genesis) -> dict[str, Any]:
    """A copy of ``doc`` whose events each carry ``rantai:signature`` (for ``POST /epcis/capture``)."""
    ctx = doc.get("@context")
    signed = []
    for p in prepare_events(doc):
        if p.event is None:
            raise InvalidRecord(f"event {p.index}: {p.error}")
        r = sign_event(signer, genesis, p.event)
        f = r.fields
        seal = {"submitter": f["submitter"], "nonce": f["nonce"].hex(), "submitted_at": f["submitted_at"],
                "signature": f["signature"].hex()}
        signed.append({**p.event, SIGNATURE_KEY: seal})
    contexts = ctx if isinstance(ctx, list) else [ctx] if ctx is not None else [EPCIS_CONTEXT]
    context = [*contexts, {"rantai": RANTAI_NS}]
    body = {"eventList": signed}
    return {**{k: v for k, v in doc.items() if k not in ("epcisBody", "@context")}, "@context": context,
            "type": "EPCISDocument", "epcisBody": body}


def iso_ms(ms: int) -> str:
    t = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def served_event(receipt: Receipt) -> dict[str, Any]:
    """The event as a node serves it for this receipt (docs/epcis.md): ``recordTime`` = block time,
    ``eventID`` = hash ID unless the event has its own."""
    event = dict(receipt.record.event)
    event.setdefault("eventID", event_hash_id(receipt.record.event))
    event["recordTime"] = iso_ms(receipt.header.timestamp)
    return event


def export_document(events: Sequence[dict[str, Any]], created_ms: int | None = None) -> dict[str, Any]:
    return {"@context": [EPCIS_CONTEXT], "type": "EPCISDocument", "schemaVersion": "2.0",
            "creationDate": iso_ms(int(time.time() * 1000) if created_ms is None else created_ms),
            "epcisBody": {"eventList": list(events)}}


# -- talking to nodes ------------------------------------------------------------------------------------

@dataclass
class Outcome:
    index: int
    status: str  # recorded | duplicate | rejected | accepted
    eventID: str | None = None
    record: str | None = None
    height: int | None = None
    existing: str | None = None
    reason: str | None = None
    source: str | None = None
    line: int | None = None  # the CSV line of the event
    receipt: Receipt | None = field(default=None, repr=False)  # verified, for recorded events and duplicates

    def to_obj(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "receipt" and getattr(self, f.name) is not None}


@dataclass
class Verified:
    event: dict[str, Any]
    receipt: Receipt
    hash_id: str


@dataclass
class _Page:
    events: list[Verified] = field(default_factory=list)
    next_token: str | None = None


class DocumentClient:
    """EPCIS documents against a rantai network; every answer is verified against ``genesis``."""

    def __init__(self, genesis: Genesis, nodes: Sequence[str] | None = None, identity: Signer | None = None, *,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.genesis = genesis
        self.nodes = [u.rstrip("/") for u in (nodes or [v.url for v in genesis.validators])]
        self.identity = identity
        self.http = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)), transport=transport)
        self._preferred = 0

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "DocumentClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, ok: Callable[[httpx.Response], bool], **kw: Any) -> httpx.Response:
        """The first answer ``ok`` accepts, trying each node from the last good one; 429 waits and retries."""
        failures = []
        deadline = time.monotonic() + 120
        n = len(self.nodes)
        for k in range(n * 8):
            i = (self._preferred + k) % n
            try:
                r = self.http.request(method, self.nodes[i] + path, **kw)
            except httpx.HTTPError as exc:
                failures.append(f"{self.nodes[i]}: {type(exc).__name__}: {exc}")
                continue
            if r.status_code == 429 and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            if ok(r):
                self._preferred = i
                return r
            failures.append(f"{self.nodes[i]}: HTTP {r.status_code} {r.text[:200]}")
            if k + 1 >= n and len(failures) >= n:
                break
        raise NodeError(f"{method} {path}: no node answered usefully ({'; '.join(failures[-n:])})")

    def _verify(self, receipt: Receipt) -> None:
        from .http import verify_receipt

        verify_receipt(receipt, self.genesis)

    # -- import ------------------------------------------------------------------------------------
    def submit_records(self, records: Sequence[SignedRecord], *, wait_s: float = 60.0) -> list[Outcome]:
        """One request (``wait=commit``): per record recorded / duplicate / rejected / accepted."""
        body = encode({"records": [r.raw for r in records]})
        r = self._request("POST", "/v1/records", params={"wait": "commit", "timeout_ms": int(wait_s * 1000)},
                          content=body, headers={"content-type": MSGPACK, "accept": MSGPACK},
                          timeout=wait_s + 30, ok=lambda r: r.status_code < 500)
        obj = decode(r.content) if r.headers.get("content-type", "").startswith(MSGPACK) else r.json()
        results: list[Any] | None
        if r.status_code >= 400:  # a one-record request answers with that record's error
            results = [{"id": records[0].id, "status": "rejected", "error": obj}]
        else:
            results = obj.get("results") if isinstance(obj, dict) else None
        if not isinstance(results, list) or len(results) != len(records):
            raise VerificationError(f"submit: {len(records)} results expected")
        out = []
        for rec, res in zip(records, results, strict=True):  # lengths checked just above
            hid = event_hash_id(rec.event)
            o = Outcome(-1, "rejected", hid, rec.id.hex())
            status = res.get("status")
            if status == "committed":
                receipt = Receipt.from_obj(res["receipt"])
                if receipt.record.id != rec.id:
                    raise VerificationError(f"submit: a receipt for another record than {rec.id.hex()}")
                self._verify(receipt)
                o.status, o.height, o.receipt = "recorded", receipt.height, receipt
            elif status == "accepted":
                o.status = "accepted"
            elif status == "duplicate":  # this very record: committed earlier or pending
                o.status, o.existing, o.height = "duplicate", rec.id.hex(), res.get("height")
            else:
                err = res.get("error") or {}
                if err.get("error") == "duplicate event":
                    o.status, o.existing, o.height = "duplicate", err.get("existing"), err.get("height")
                else:
                    o.reason = f"{err.get('error', 'rejected')}: {err.get('message', '')}".strip()
            out.append(o)
        return out

    def record_receipt(self, record_id: str) -> Receipt:
        """The verified receipt of a committed record (by its id in hex)."""
        r = self._request("GET", f"/v1/records/{record_id}", headers={"accept": MSGPACK},
                          ok=lambda r: r.status_code == 200)
        receipt = Receipt.from_obj(decode(r.content))
        if receipt.record.id.hex() != record_id:
            raise VerificationError(f"asked for record {record_id}, got {receipt.record.id.hex()}")
        self._verify(receipt)
        return receipt

    def import_events(self, prepared: Sequence[Prepared], *, batch: int = 100, wait_s: float = 60.0,
                      progress: Callable[[int], None] | None = None, receipts: bool = False) -> list[Outcome]:
        """Sign and submit every prepared event in batches; one outcome per event, in order.

        With ``receipts``, a duplicate's outcome carries the verified receipt of the record that already
        holds the event (recorded events always carry theirs), so every event of the input has one.
        """
        if self.identity is None:
            raise InvalidRecord("import: no identity (signing key) given; importing needs one")
        outcomes: list[Outcome | None] = [None] * len(prepared)
        todo: list[tuple[int, SignedRecord]] = []
        for k, p in enumerate(prepared):
            if p.event is None:
                outcomes[k] = Outcome(p.index, "rejected", reason=p.error, line=p.line)
                if progress:
                    progress(1)
                continue
            try:
                record = sign_event(self.identity, self.genesis, p.event)
                record.verify(self.genesis)
            except (RantaiError, ValueError) as exc:
                outcomes[k] = Outcome(p.index, "rejected", p.hash_id, reason=str(exc), line=p.line)
                if progress:
                    progress(1)
                continue
            todo.append((k, record))
        for s in range(0, len(todo), batch):
            chunk = todo[s:s + batch]
            outcomes_of_chunk = self.submit_records([r for _, r in chunk], wait_s=wait_s)  # one per record
            for (k, _), o in zip(chunk, outcomes_of_chunk, strict=True):
                o.index, o.line = prepared[k].index, prepared[k].line
                if receipts and o.status == "duplicate" and o.existing and o.receipt is None:
                    o.receipt = self.record_receipt(o.existing)
                outcomes[k] = o
            if progress:
                progress(len(chunk))
        return [o for o in outcomes if o is not None]

    # -- query and export ------------------------------------------------------------------------------
    def query_page(self, params: Sequence[tuple[str, str]], node: int | None = None) -> _Page:
        path = "/epcis/events"
        query = (*params, ("proofs", "true"))  # a tuple: httpx takes a list or a tuple of pairs
        headers = {"accept": "application/ld+json"}
        if node is not None:
            r = self.http.get(self.nodes[node] + path, params=query, headers=headers)
            if r.status_code != 200:
                raise NodeError(f"GET {path}: HTTP {r.status_code} {r.text[:300]}")
        else:
            r = self._request("GET", path, ok=lambda r: r.status_code == 200 or 400 <= r.status_code < 500,
                              params=query, headers=headers)
            if r.status_code != 200:
                body = r.json() if r.text else {}
                raise InvalidRecord(f"query: {body.get('detail') or body.get('message') or r.text[:300]}")
        doc = r.json()
        events = doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        proofs = doc.get("rantai:proofs") or []
        if len(proofs) != len(events):
            raise VerificationError("query: one proof per event expected")
        page = _Page(next_token=r.headers.get("gs1-next-page-token"))
        for ev, proof in zip(events, proofs, strict=True):  # lengths checked above
            receipt = Receipt.from_json(json.dumps(proof["receipt"]))
            self._verify(receipt)
            expect = served_event(receipt)
            if ev != expect:
                raise VerificationError(f"query: event {proof.get('eventID')} differs from its signed record")
            page.events.append(Verified(ev, receipt, event_hash_id(receipt.record.event)))
        return page

    def query(self, params: Sequence[tuple[str, str]], per_page: int = 200) -> Iterator[Verified]:
        """Every event the query matches, page by page, each verified (pages come from one node)."""
        base = [(k, v) for k, v in params if k not in ("perPage", "nextPageToken")] + [("perPage", str(per_page))]
        page = self.query_page(base)
        node = self._preferred
        yield from page.events
        while page.next_token:
            page = self.query_page([*base, ("nextPageToken", page.next_token)], node=node)
            yield from page.events

    def history(self, item: str) -> list[Verified]:
        from .http import Client

        with Client(self.genesis, self.nodes, transport=self.http._transport) as c:  # noqa: SLF001
            return [Verified(served_event(vr.receipt), vr.receipt, event_hash_id(vr.event)) for vr in c.history(item)]

    def export(self, *, item: str | None = None, start: str | None = None, end: str | None = None) -> list[Verified]:
        """Verified events in chain order: those naming ``item`` (any GS1 identifier, as ``trace``), or all;
        with eventTime in [start, end)."""
        if item is None:
            params = [(k, v) for k, v in (("GE_eventTime", start), ("LT_eventTime", end)) if v]
            return list(self.query(params))
        lo = parse_time_us(start) if start else None
        hi = parse_time_us(end) if end else None
        out = []
        for v in self.history(item):
            t = parse_time_us(v.event.get("eventTime"))
            if t is None or (lo is not None and t < lo) or (hi is not None and t >= hi):
                continue
            out.append(v)
        return out

    def event(self, event_id: str) -> Verified:
        """The committed event with this hash ID or own eventID, verified (its hash or eventID must match)."""
        r = self._request("GET", "/v1/events/" + quote(event_id, safe=""), headers={"accept": MSGPACK},
                          ok=lambda r: r.status_code in (200, 404))
        if r.status_code == 404:
            from .http import NotFound

            raise NotFound(f"no node has the event {event_id}")
        receipt = Receipt.from_obj(decode(r.content))
        self._verify(receipt)
        hid = event_hash_id(receipt.record.event)
        if event_id not in (hid, receipt.record.event.get("eventID")) and event_id.split("?")[0] != hid.split("?")[0]:
            raise VerificationError(f"asked for event {event_id}, got {hid}")
        return Verified(served_event(receipt), receipt, hid)

    # -- capture ---------------------------------------------------------------------------------------
    def capture(self, doc: dict[str, Any]) -> tuple[str, str]:
        """POST a signed document to /epcis/capture: (capture id, URL of the job on the node that took it)."""
        r = self._request("POST", "/epcis/capture", content=json.dumps(doc).encode(),
                          headers={"content-type": "application/ld+json"}, ok=lambda r: r.status_code == 202)
        return r.json()["captureID"], self.nodes[self._preferred] + r.headers["location"]

    def capture_job(self, url: str, *, wait_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + wait_s
        while True:
            job = self.http.get(url).json()
            if not job.get("running") or time.monotonic() > deadline:
                return job
            time.sleep(0.1)


def write_proofs(directory: Path, verified: Sequence[Verified], genesis_bytes: bytes) -> None:
    """Everything needed to verify each exported event offline: the genesis, one receipt per event,
    and an index from eventID / hash ID to receipt file (``rantai verify DIR/receipts/ID.json -g DIR/genesis.json``)."""
    rdir = directory / "receipts"
    rdir.mkdir(parents=True, exist_ok=True)
    (directory / "genesis.json").write_bytes(genesis_bytes)
    index = []
    for v in verified:
        name = f"{v.receipt.record.id.hex()}.json"
        (rdir / name).write_text(v.receipt.to_json(), encoding="utf-8")
        index.append({"eventID": v.event.get("eventID"), "eventHashID": v.hash_id, "record": v.receipt.record.id.hex(),
                      "height": v.receipt.height, "receipt": f"receipts/{name}"})
    (directory / "index.json").write_text(json.dumps({"format": "rantai-epcis-proofs/1", "events": index}, indent=1),
                                          encoding="utf-8")


# -- CLI ------------------------------------------------------------------------------------------------

def _cli() -> Any:
    from . import cli as c

    return c


def _doc_client(ctx: click.Context, cfg: Any, identity: Any = None) -> DocumentClient:
    c = _cli()
    return DocumentClient(cfg.load_genesis(), cfg.nodes or None, identity, timeout=cfg.timeout,
                          transport=c._transport(ctx, cfg))  # noqa: SLF001


def _import_command() -> click.Command:
    c = _cli()

    @click.command("import")
    @click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--batch", type=int, default=100, show_default=True, help="Records per request.")
    @click.option("--wait-timeout", type=float, default=60.0, show_default=True,
                  help="Seconds to wait for each batch to commit.")
    @click.option("--receipts", "receipts_dir", type=click.Path(file_okay=False),
                  help="Write the genesis, a verified receipt per recorded (or duplicate) event and an index here.")
    @click.option("--tz", metavar="ZONE",
                  help="Time zone of CSV times written without offset: UTC (default), +hh:mm or an IANA name.")
    @click.option("--xsd", "xsd_dir", type=click.Path(exists=True, file_okay=False),
                  help="Also validate XML files against GS1's EPCIS XSDs in this folder.")
    @click.option("--json", "as_json", is_flag=True, help="Print every outcome as JSON.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
    @click.option("--key", "-k", type=click.Path(dir_okay=False), help="Identity key file (RANTAI_KEY).")
    @c._common()  # noqa: SLF001
    @click.pass_context
    def import_(ctx: click.Context, files: tuple[str, ...], batch: int, wait_timeout: float,
                receipts_dir: str | None, tz: str | None, xsd_dir: str | None, as_json: bool, quiet: bool,
                key: str | None, config_file: str | None, genesis: str | None, nodes: tuple[str, ...],
                timeout: float | None) -> None:
        """Sign and submit every event of EPCIS documents (JSON/JSON-LD, XML), event lists, or CSV files in the
        template (docs/epcis.md), in batches; re-running records nothing twice.

        Each event is reported: recorded (with its block height), duplicate (its event hash ID is on the
        ledger already: the existing record is named), or rejected (with the reason; for CSV the line, the
        column and the rule). The other events are recorded all the same.
        """
        cfg = c._config(config_file, genesis, nodes, key, timeout, tz)  # noqa: SLF001
        identity = cfg.load_identity(prompt=lambda: click.prompt("key passphrase", hide_input=True, err=True))
        work: list[tuple[str, list[Prepared]]] = []
        for f in files:
            try:
                work.append((f, load_events(f, tz=cfg.tzinfo(), xsd_dir=xsd_dir)))
            except RantaiError as exc:
                kind = ConfigError if isinstance(exc, ConfigError) else InvalidRecord
                raise kind(f"import: {f}: {exc}", rule=exc.rule) from exc
        total = sum(len(p) for _, p in work)
        results: list[tuple[str, Outcome]] = []
        bar = None if (quiet or as_json) else c._progress_bar(True)  # noqa: SLF001
        started = time.perf_counter()
        with _doc_client(ctx, cfg, identity) as client:
            if bar is None:
                for f, prepared in work:
                    results += [(f, o) for o in client.import_events(prepared, batch=batch, wait_s=wait_timeout,
                                                                     receipts=receipts_dir is not None)]
            else:
                with bar:
                    task = bar.add_task("importing", total=total, rate="-")

                    def tick(n: int) -> None:
                        bar.advance(task, n)
                        done = bar.tasks[0].completed
                        bar.update(task, rate=f"{done / max(1e-6, time.perf_counter() - started):,.0f}")

                    for f, prepared in work:
                        results += [(f, o) for o in client.import_events(prepared, batch=batch, wait_s=wait_timeout,
                                                                         progress=tick,
                                                                         receipts=receipts_dir is not None)]
        counts: dict[str, int] = {}
        for _, o in results:
            counts[o.status] = counts.get(o.status, 0) + 1
        if as_json:
            c._dump({"events": [{"file": f, **o.to_obj()} for f, o in results], "counts": counts})  # noqa: SLF001
        else:
            for f, o in results:
                where = f"{f} line {o.line}" if o.line is not None else f"{f}[{o.index}]"
                if o.status == "recorded":
                    click.echo(f"recorded   {where} {o.eventID} record {o.record} at height {o.height}")
                elif o.status == "duplicate":
                    click.echo(f"duplicate  {where} {o.eventID} already recorded as {o.existing}")
                elif o.status == "accepted":
                    click.echo(f"accepted   {where} {o.eventID} record {o.record} "
                               f"(not committed within {wait_timeout:g} s)")
                elif o.line is not None and (o.reason or "").startswith(f"line {o.line}"):
                    click.echo(f"rejected   {f} {o.reason}")  # the reason names line, column and rule
                else:
                    click.echo(f"rejected   {where} {o.reason}")
            click.echo(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no events")
        if receipts_dir:
            proven = [Verified(served_event(o.receipt), o.receipt, o.eventID or event_hash_id(o.receipt.record.event))
                      for _, o in results if o.receipt is not None]
            write_proofs(Path(receipts_dir), proven, Path(cfg.genesis).read_bytes() if cfg.genesis else
                         cfg.load_genesis().to_json().encode())
            click.echo(f"{len(proven)} receipt(s) in {receipts_dir}", err=True)
        if counts.get("rejected"):
            ctx.exit(c.EXIT_REJECTED)
        if counts.get("accepted"):
            ctx.exit(c.EXIT_NODE)

    return import_


def _export_command() -> click.Command:
    c = _cli()

    @click.command("export")
    @click.option("--item", metavar="ID", help="Only events naming this GS1 identifier (as `rantai trace`).")
    @click.option("--from", "start", metavar="T", help="Only events with eventTime >= T (RFC 3339).")
    @click.option("--to", "end", metavar="T", help="Only events with eventTime < T (RFC 3339).")
    @click.option("--with-proofs", "proofs_dir", type=click.Path(file_okay=False),
                  help="Also write the genesis and one verified receipt per event into this directory.")
    @click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the document here (default: stdout).")
    @c._common()  # noqa: SLF001
    @click.pass_context
    def export(ctx: click.Context, item: str | None, start: str | None, end: str | None, proofs_dir: str | None,
               output: str | None, config_file: str | None, genesis: str | None, nodes: tuple[str, ...],
               timeout: float | None) -> None:
        """Write the ledger's events as an EPCISDocument (JSON-LD), every event verified against the genesis."""
        for name, v in (("--from", start), ("--to", end)):
            if v is not None and parse_time_us(v) is None:
                raise click.BadParameter(f"{v!r} is not an RFC 3339 time", param_hint=name)
        cfg = c._config(config_file, genesis, nodes, None, timeout)  # noqa: SLF001
        with _doc_client(ctx, cfg) as client:
            verified = client.export(item=item, start=start, end=end)
        doc = export_document([v.event for v in verified])
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        if output:
            Path(output).write_text(text, encoding="utf-8")
        else:
            click.echo(text, nl=False)
        if proofs_dir:
            write_proofs(Path(proofs_dir), verified, Path(cfg.genesis).read_bytes() if cfg.genesis else
                         client.genesis.to_json().encode())
        click.echo(f"exported {len(verified)} event(s)" + (f"; proofs in {proofs_dir}" if proofs_dir else ""), err=True)

    return export


import_command = _import_command()
export_command = _export_command()


def register_commands(group: Any = None) -> None:
    """Install ``import`` and ``export`` on the ``rantai`` group (or ``group``)."""
    if group is None:
        _cli().register(import_command, "import")
        _cli().register(export_command, "export")
    else:
        group.add_command(import_command, "import")
        group.add_command(export_command, "export")


register_commands()
