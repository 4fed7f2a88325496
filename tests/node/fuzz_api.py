"""A hostile-input generator and checker for a node's HTTP API (issue 15: no 5xx, every error in its shape).

Requests are written as raw bytes on a socket, not through httpx, so that what a client library would
refuse or normalise (invalid UTF-8 in a path, ``..`` segments, percent-encoding oddities, duplicate or
overlong headers, a wrong Content-Length, bogus methods) reaches the server as sent. Answers are parsed
with h11. ``check`` says what is wrong with an answer (None when it is as docs/api.md promises):
no 5xx but a 503 in the error shape, every 4xx in ``{"error": RULE, "message": ...}`` (msgpack when the
client asked for it), and under /epcis in RFC 7807 problem details carrying the same keys.

Used by tests/node/test_fuzz_api.py; run on its own against a running network with
``python tests/node/fuzz_api.py http://127.0.0.1:7100 ... -n 20000 --seed 1``.
"""

from __future__ import annotations

import base64
import json
import random
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import h11
import msgpack


@dataclass
class Req:
    method: str
    target: bytes  # path and query, raw
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    why: str = ""
    raw_framing: bool = False  # the headers already frame the body (or lie about it): add no Content-Length


@dataclass
class Ans:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Seeds:
    """Real values from the chain under test, so that some requests reach past the first checks."""

    record_ids: list[str]
    event_ids: list[str]
    items: list[str]
    page_token: str
    height: int
    biz_steps: list[str]
    capture_doc: dict | None = None  # a signed EPCISDocument (fresh signature: a valid capture)


def send(host: str, port: int, req: Req, timeout: float = 30.0) -> Ans | None:
    """The answer to ``req``, or None when the server closed the connection without one."""
    head = [req.method.encode() + b" " + req.target + b" HTTP/1.1", b"host: " + f"{host}:{port}".encode(),
            b"connection: close"]
    head += [k + b": " + v for k, v in req.headers]
    if not req.raw_framing:
        head.append(b"content-length: " + str(len(req.body)).encode())
    data = b"\r\n".join(head) + b"\r\n\r\n" + req.body
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may answer (413, 400) and close before reading everything
        if req.raw_framing:  # a lying length: end the request so the server sees it incomplete
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
    raw = b"".join(chunks)
    if not raw:
        return None
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 24)
    conn.send(h11.Request(method="HEAD" if req.method == "HEAD" else "GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    conn.receive_data(b"")
    status, headers, body = 0, {}, bytearray()
    while True:
        try:
            ev = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if status:
                break  # a truncated body after a complete head: the head is judged
            raise ValueError(f"unparseable answer: {exc}: {raw[:200]!r}") from exc
        if isinstance(ev, h11.Response):
            status = ev.status_code
            headers = {k.decode().lower(): v.decode("latin-1") for k, v in ev.headers}
        elif isinstance(ev, h11.InformationalResponse):
            continue
        elif isinstance(ev, h11.Data):
            body += ev.data
        elif ev is h11.NEED_DATA or isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)) or ev is h11.PAUSED:
            break
    return Ans(status, headers, bytes(body))


def _path_of(target: bytes) -> str:
    return target.split(b"?", 1)[0].decode("latin-1")


def check(req: Req, ans: Ans | None) -> str | None:
    """What is wrong with ``ans`` as the answer to ``req`` (None: nothing)."""
    if ans is None:
        if req.why in ("short body", "bad chunk"):
            return None  # the request never ended (its length lied, then EOF): there is nothing to answer
        return "connection closed without an answer"
    if ans.status >= 500:
        if ans.status != 503:
            return f"{ans.status}: {ans.body[:300]!r}"
    if ans.status < 400 or req.method == "HEAD":
        return None
    ctype = ans.headers.get("content-type", "")
    try:
        if ctype.startswith("application/msgpack"):
            obj = msgpack.unpackb(ans.body, raw=False, strict_map_key=False)
        else:
            obj = json.loads(ans.body)
    except Exception:
        return f"{ans.status} body not {ctype or 'JSON'}: {ans.body[:200]!r}"
    if not isinstance(obj, dict) or not isinstance(obj.get("error"), str) or not isinstance(obj.get("message"), str):
        return f"{ans.status} without error/message: {ans.body[:200]!r}"
    if ans.status >= 500 and obj["error"] not in ("unavailable", "invariant broken"):
        return f"503 with error {obj['error']!r}"
    path = _path_of(req.target)
    if path.startswith("/epcis") and not obj["message"].startswith("HTTP request not readable"):
        # (the HTTP parser's refusals come before any route is known: node/parser_errors.py)
        if not ctype.startswith("application/problem+json"):
            return f"/epcis error {ans.status} as {ctype!r}, not problem+json"
        if not str(obj.get("type", "")).startswith("epcisException:") or obj.get("status") != ans.status \
                or not isinstance(obj.get("title"), str):
            return f"/epcis error {ans.status} not RFC 7807: {ans.body[:200]!r}"
    if ans.status == 429 and "retry-after" not in ans.headers:
        return "429 without Retry-After"
    return None


# -- the generator -----------------------------------------------------------------------------

KINDS = ["eventTypes", "bizSteps", "dispositions", "readPoints", "bizLocations", "epcs"]
STATIC_PATHS = ["/v1/records", "/v1/blocks", "/v1/head", "/v1/genesis", "/v1/config", "/v1/changes", "/v1/status",
                "/metrics", "/healthz", "/v1/peer/messages", "/v1/peer/records", "/v1/peer/stream", "/epcis",
                "/epcis/", "/epcis/capture", "/epcis/events", "/epcis/eventTypes", "/epcis/bizSteps",
                "/epcis/dispositions", "/epcis/readPoints", "/epcis/bizLocations", "/epcis/epcs", "/openapi.json",
                "/docs", "/explorer", "/explorer/", "/", "/v1", "/v1/", "/epcis/queries", "/v1/items"]
QUERY_PARAMS = ["eventType", "GE_eventTime", "LT_eventTime", "GE_recordTime", "LT_recordTime", "EQ_action",
                "EQ_bizStep", "EQ_disposition", "EQ_readPoint", "WD_readPoint", "EQ_bizLocation", "WD_bizLocation",
                "MATCH_epc", "MATCH_parentID", "MATCH_inputEPC", "MATCH_outputEPC", "MATCH_anyEPC", "MATCH_epcClass",
                "MATCH_anyEPCClass", "EQ_quantity", "GT_quantity", "LE_quantity", "EQ_eventID",
                "EXISTS_errorDeclaration",
                "GE_errorDeclarationTime", "EQ_errorReason", "orderBy", "orderDirection", "eventCountLimit",
                "maxEventCount", "perPage", "nextPageToken", "proofs", "EQ_bizTransaction_po",
                "EQ_source_owning_party", "EQ_INNER_bizStep", "EQ_ilmd_bestBefore", "GE_INNER_ilmd_x",
                "EQ_type", "EXISTS_ilmd", "HASATTR_readPoint", "EQ_ATTR_readPoint_x",
                "EQ_persistentDisposition_set",
                "from", "to", "height", "wait", "timeout_ms", "maxElementCount"]


def _evil_strings(rng: random.Random) -> list[bytes]:
    """Raw (already on-the-wire) path segments and query values."""
    return [b"..", b"%2e%2e", b"%2e%2e%2f%2e%2e%2fetc%2fpasswd", b"../../../../etc/passwd", b"%00", b"%ff%fe",
            b"%c0%ae",
            b"%", b"%zz", b"%2", b"%252F", b"%u002e", b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"a" * 9000,
            b"%F0%9F%92%A9", b"\xf0\x9f\x92\xa9", b"-1", b"0", b"99999999999999999999999999", b"1e309", b"NaN",
            b"Infinity", b"-0", b"0x10", b"1.5", b" 1", b"+1", b"\xd9\xa3", b"%E2%80%AE", b"urn:epc:id:sgtin:1.2.3",
            b"ni:///sha-256;" + b"0" * 64 + b"?ver=CBV2.0", b"ni%3A%2F%2F%2Fsha-256%3B" + b"f" * 64, b"true",
            b"2026-01-01T00:00:00", b"2026-13-45T99:99:99Z", b"99999-01-01T00:00:00Z", b"2026-01-01T00:00:00+99:99",
            b"%0d%0aSet-Cookie:%20x", b"a|b|", b"|", b"", b"%20", b"{}", b"[]",
            quote("\u202e\u0000\ud7ff", safe="").encode(), str(rng.getrandbits(80)).encode(),
            base64.urlsafe_b64encode(rng.randbytes(rng.choice([0, 1, 8, 22, 27, 30, 64]))).rstrip(b"=")]


def _forged_tokens(rng: random.Random, seeds: Seeds) -> list[bytes]:
    good = seeds.page_token
    raw = base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)) if good else b"\0" * 27
    out = [good.encode()]
    for _ in range(3):
        b = bytearray(raw)
        if b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        out.append(base64.urlsafe_b64encode(bytes(b)).rstrip(b"="))
    out += [base64.urlsafe_b64encode(struct.pack(">QQ", h, i) + raw[16:]).rstrip(b"=")
            for h, i in ((2**64 - 1, 0), (seeds.height + 10**6, 1), (0, 0), (seeds.height, 2**63), (1, 2**64 - 1))]
    out += [base64.urlsafe_b64encode(rng.randbytes(n)).rstrip(b"=") for n in (1, 15, 16, 17, 26, 28, 200)]
    out += [good.encode() + b"=", good.encode()[:-1], b"!!!!", b"%2B%2F", b"A" * 4000]
    return out


def _deep(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


def _json_bodies(rng: random.Random, seeds: Seeds) -> list[tuple[bytes, str]]:
    rid = seeds.record_ids[0] if seeds.record_ids else "00" * 32
    ev = {"type": "ObjectEvent", "action": "OBSERVE", "eventTime": "2026-01-01T00:00:00Z",
          "eventTimeZoneOffset": "+00:00", "epcList": ["urn:epc:id:sgtin:0614141.107346.1"], "bizStep": "shipping"}
    sig = {"submitter": "ab" * 32, "nonce": "00" * 16, "submitted_at": 1, "signature": "00" * 64}
    doc = {"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"], "type": "EPCISDocument",
           "schemaVersion": "2.0", "creationDate": "2026-01-01T00:00:00Z",
           "epcisBody": {"eventList": [{**ev, "rantai:signature": sig}]}}
    weird_sigs = [None, 1, "x", [], {"submitter": 1}, {**sig, "nonce": "0"}, {**sig, "nonce": "zz" * 16},
                  {**sig, "submitted_at": 1e308}, {**sig, "submitted_at": -1}, {**sig, "submitted_at": 2**64},
                  {**sig, "submitted_at": "1"}, {**sig, "submitted_at": True}, {**sig, "signature": "00" * 10000},
                  {**sig, "submitter": "ab" * 33}, {**sig, "submitted_at": 10**30}]
    out: list[tuple[bytes, str]] = []
    for s in weird_sigs:
        d = json.loads(json.dumps(doc))
        d["epcisBody"]["eventList"][0]["rantai:signature"] = s
        out.append((json.dumps(d).encode(), "doc sig"))
        out.append((json.dumps({**ev, "rantai:signature": s}).encode(), "event sig"))
    weird_events = [{**ev, "eventTime": "NaN"}, {**ev, "eventTime": 5}, {**ev, "type": "Nope"}, {**ev, "type": None},
                    {**ev, "epcList": "x"}, {**ev, "epcList": [1, None, {}]}, {**ev, "action": []},
                    {**ev, "quantityList": [{"epcClass": "x", "quantity": 1e400}]}, {"type": "ObjectEvent"}, [], 1,
                    {**ev, "eventTimeZoneOffset": "+99:99"}, {**ev, "eventID": "ni:///sha-256;" + "0" * 64},
                    {**ev, "errorDeclaration": {"declarationTime": "x"}}, {**ev, "epcList": ["a"] * 20000},
                    {**ev, "readPoint": {"id": {"id": {}}}}, {**ev, "bizTransactionList": [{"type": 1}]},
                    {**ev, "sensorElementList": [{"sensorReport": [{"value": "NaN"}]}]}]
    for e in weird_events:
        d = json.loads(json.dumps(doc))
        if isinstance(e, dict):
            e = {**e, "rantai:signature": sig}
        d["epcisBody"]["eventList"][0] = e
        out.append((json.dumps(d).encode(), "doc event"))
        out.append((json.dumps(e).encode(), "event"))
    for body in [{"epcisBody": None}, {"epcisBody": {"eventList": None}}, {"epcisBody": {"eventList": {}}},
                 {"epcisBody": {"eventList": [None] * 5}}, {"epcisBody": {"eventList": [{}] * 100000}},
                 {"type": "EPCISQueryDocument"}, {"epcisBody": []}, {"epcisBody": {"queryResults": {}}},
                 {"records": None}, {"records": "x"}, {"records": [1, None, {}]}, {"records": ["zz"]},
                 {"records": ["00"]}, {"records": ["ab" * 100]}, {"records": [rid]}, {"records": [rid] * 3},
                 {"records": []}, {"records": ["00" * 10] * 100000}, {}, {"a": 1}]:
        out.append((json.dumps(body).encode(), "struct"))
    for depth in (63, 64, 65, 66, 200, 5000, 100000):
        out.append((_deep(depth), f"deep array {depth}"))
        out.append((b'{"epcisBody":{"eventList":[' + _deep(depth, '{"a":', "}")[:-1]
                    + b"1" + b"}" * depth + b"]}}", f"deep object {depth}"))
        out.append((b'{"records":' + _deep(depth) + b"}", f"deep records {depth}"))
    # Nesting inside strings counts no depth; an unbalanced document.
    out += [(b'{"records":["' + b"[" * 100000 + b'"]}', "brackets in a string"), (b"[" * 70, "unclosed"),
            (b"]" * 70, "closing only"), (b'{"a":"\\' + b'"' * 10, "escape run")]
    out += [(b'{"records": [1e999999]}', "huge exponent"), (b'{"records": [' + b"9" * 100000 + b"]}", "huge int"),
            (b'{"perPage": -' + b"9" * 5000 + b"}", "huge negative"),
            (b'{"records": [NaN, Infinity, -Infinity]}', "NaN"), (b'{"epcisBody": NaN}', "NaN body"), (b"NaN", "NaN"),
            (b"Infinity", "Infinity"), (b'{"records": [], "records": ["00"]}', "duplicate keys"),
            (json.dumps({**doc}).encode()[:-1] + b', "epcisBody": {"eventList": [1]}}', "duplicate epcisBody"),
            (b"\xef\xbb\xbf{}", "BOM"), (b'{"records": ["\xff\xfe"]}', "invalid utf-8"),
            (b'{"records": ["\\ud800"]}', "lone surrogate"), (b'{"\xc0\xaf": 1}', "overlong utf-8"), (b"", "empty"),
            (b"null", "null"), (b"0", "zero"), (b'"x"', "string"), (b"{", "truncated"), (b"\x00" * 100, "zeros"),
            (b"  \n\t ", "spaces"), (b'{"records": []}' + b" x", "trailing"), (b"\x1f\x8b\x08\x00", "gzip magic")]
    return out


def _msgpack_bodies(rng: random.Random, seeds: Seeds) -> list[tuple[bytes, str]]:
    rid = bytes.fromhex(seeds.record_ids[0]) if seeds.record_ids else b"\0" * 32
    out = [(msgpack.packb({"records": [rid]}), "a record id as a record"), (msgpack.packb({"records": []}), "none"),
           (msgpack.packb({"records": [b"\x00"] * 3}), "bytes"), (msgpack.packb({"records": [1, "x", None]}), "types"),
           (msgpack.packb({"records": None}), "null"), (msgpack.packb([1, 2]), "array"), (b"\xc1", "never used byte"),
           (b"\xdd\xff\xff\xff\xff", "array32 header only"), (b"\x81\xa7records\xdd\x7f\xff\xff\xff", "huge count"),
           (b"\xdf\xff\xff\xff\xff", "map32 header only"), (b"\xc6\xff\xff\xff\xff", "bin32 header only"),
           (b"\xd4\x01\x00", "ext"), (msgpack.packb({"records": [msgpack.ExtType(5, b"x")]}), "ext record"),
           (b"\x91" * 100000 + b"\xc0", "deep msgpack"), (b"\x81\xc0\xc0", "nil key"),
           (msgpack.packb({"records": [rid], "records2": 1}), "extra key"), (msgpack.packb(2**64 - 1), "uint64"),
           (b"\xcb" + struct.pack(">d", float("nan")), "NaN double"), (msgpack.packb({1: 2}), "int key"),
           (b"\x82\xa7records\x90\xa7records\x90", "duplicate keys"), (rng.randbytes(200), "random"),
           (msgpack.packb({"records": [rng.randbytes(rng.randrange(1, 400)) for _ in range(5)]}), "random records")]
    for d in seeds.record_ids[:1]:
        out.append((msgpack.packb({"records": [bytes.fromhex(d) * 3]}), "ids"))
    return out


HEADER_SETS: list[list[tuple[bytes, bytes]]] = [
    [(b"accept", b"application/msgpack")], [(b"accept", b"text/html")], [(b"accept", b"*/*;q=NaN")],
    [(b"accept", b"application/json;q=abc, */*;q=-1")], [(b"accept", b"application/ld+json")], [(b"accept", b"")],
    [(b"accept", b"\xff\xfe")], [(b"GS1-EPCIS-Min", b"abc")], [(b"GS1-EPCIS-Max", b"1.0.0")],
    [(b"GS1-EPCIS-Min", b"99999999999999999999999.0.0")], [(b"GS1-CBV-Min", b"2..0")], [(b"GS1-CBV-Max", b"")],
    [(b"GS1-EPCIS-Min", b"2.0.0.0.0.0.0.0.0.0.0")], [(b"GS1-EPCIS-Max", b"-2.0")], [(b"GS1-CBV-Min", b"\xd9\xa3.0.0")],
    [(b"GS1-EPC-Format", b"Always_EPC_URN")], [(b"GS1-EPC-Format", b"Always_GS1_Digital_Link")],
    [(b"GS1-EPC-Format", b"bogus")], [(b"GS1-EPC-Format", b"")], [(b"GS1-Capture-Error-Behaviour", b"proceed")],
    [(b"GS1-Capture-Error-Behaviour", b"\xff")], [(b"GS1-Capture-Error-Behaviour", b"all")],
    [(b"GS1-EPCIS-Version", b"x")], [(b"x-rantai-sender", b"v0")], [(b"x-rantai-sender", b"\xff" * 100)],
    [(b"x-rantai-sender", b"0" * 64)], [(b"signature-input", b'rantai=("@method");created=NaN;keyid="zz"')],
    [(b"signature", b"rantai=:!!!:")], [(b"x-forwarded-for", b"1.2.3.4, ::1")], [(b"content-encoding", b"gzip")],
    [(b"transfer-encoding", b"gzip")], [(b"expect", b"100-continue")], [(b"x-long", b"a" * 60000)],
    [(b"x-a%d" % i, b"b") for i in range(150)], [(b"accept", b"application/json"), (b"accept", b"application/msgpack")],
    [(b"GS1-EPCIS-Min", b"2.0.0"), (b"GS1-EPCIS-Min", b"3.0.0")], [(b"range", b"bytes=0-1")],
    [(b"if-none-match", b"*")], [(b"origin", b"http://evil.example")], [(b"cookie", b"=" * 1000)], [],
]
CONTENT_TYPES = [b"application/json", b"application/ld+json", b"application/msgpack", b"text/plain",
                 b"multipart/form-data; boundary=x", b"application/x-www-form-urlencoded",
                 b"application/json; charset=latin-1",
                 b"application/json; charset=\xff", b"APPLICATION/JSON", b"application/problem+json", b"", b";;;",
                 b"application/msgpack; q=0", b"application/*", b"*/*"]
METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "FOO", "get"]


def _targets(rng: random.Random, seeds: Seeds) -> list[bytes]:
    """Paths with path parameters, real and hostile."""
    evil = _evil_strings(rng)
    real = ([*(r.encode() for r in seeds.record_ids[:3])], [*(quote(e, safe="").encode() for e in seeds.event_ids[:3])],
            [*(quote(i, safe="").encode() for i in seeds.items[:3])],
            [*(quote(b, safe="").encode() for b in seeds.biz_steps)])
    out: list[bytes] = []
    for v in evil + real[0] + real[1] + real[2] + real[3]:
        out += [b"/v1/records/" + v, b"/v1/blocks/" + v, b"/v1/items/" + v + b"/history", b"/v1/events/" + v,
                b"/epcis/events/" + v, b"/epcis/capture/" + v]
        for k in KINDS:
            out += [b"/epcis/" + k.encode() + b"/" + v, b"/epcis/" + k.encode() + b"/" + v + b"/events"]
    out += [b"/v1/../v1/head", b"/epcis/../v1/head", b"//v1//head", b"/v1/head/", b"/V1/HEAD", b"/epcis/./events",
            b"/v1/%68ead", b"/v1/head%00", b"/v1/head;x=1", b"/explorer/../../etc/passwd", b"/explorer/%2e%2e/app.py",
            b"/explorer/..%2f..%2fnode%2fapp.py", b"*", b"http://127.0.0.1/v1/head", b"/v1/items//history",
            b"/v1/items/%2F%2F/history", b"/v1/blocks/1e3", b"/v1/blocks/" + b"9" * 30, b"/v1/blocks/-0",
            b"/epcis/events/" + b"%" * 100, b"/epcis/capture/" + b"9" * 5000]
    return out


def requests(rng: random.Random, seeds: Seeds, n: int) -> Iterator[Req]:
    """``n`` requests drawn from the hostile families, in a fixed order for a given seed."""
    targets = _targets(rng, seeds)
    jbodies = _json_bodies(rng, seeds)
    mbodies = _msgpack_bodies(rng, seeds)
    evil = _evil_strings(rng)
    tokens = _forged_tokens(rng, seeds)
    post_paths = [b"/v1/records", b"/epcis/capture", b"/epcis/events", b"/v1/peer/records", b"/v1/peer/messages",
                  b"/v1/peer/stream", b"/v1/records?wait=commit&timeout_ms=1"]
    all_paths = [p.encode() for p in STATIC_PATHS] + targets
    families = ["method", "path", "query", "token", "json", "msgpack", "ctype", "headers", "framing", "valid"]
    for i in range(n):
        fam = families[i % len(families)]
        hdrs = list(rng.choice(HEADER_SETS)) if rng.random() < 0.3 else []
        if fam == "method":
            yield Req(rng.choice(METHODS), rng.choice(all_paths), hdrs, why=fam)
        elif fam == "path":
            yield Req(rng.choice(["GET", "GET", "HEAD", "OPTIONS"]), rng.choice(targets), hdrs, why=fam)
        elif fam == "query":
            base = rng.choice([b"/epcis/events", b"/v1/blocks", b"/v1/config", b"/v1/changes", b"/epcis/bizSteps",
                               b"/epcis/epcs/" + quote(rng.choice(seeds.items or ["x"]), safe="").encode() + b"/events",
                               b"/epcis/readPoints", b"/v1/head", b"/epcis/events/" + quote(
                                   rng.choice(seeds.event_ids or ["x"]), safe="").encode()])
            parts = []
            for _ in range(rng.randrange(1, 5)):
                name = rng.choice(QUERY_PARAMS).encode()
                if rng.random() < 0.1:
                    name = rng.choice(evil)
                parts.append(name + b"=" + rng.choice(evil))
            yield Req("GET", base + b"?" + b"&".join(parts), hdrs, why=fam)
        elif fam == "token":
            base = rng.choice([b"/epcis/events", b"/epcis/bizSteps", b"/epcis/readPoints", b"/epcis/dispositions",
                               b"/epcis/bizLocations", b"/epcis/events?EQ_bizStep=shipping"])
            sep = b"&" if b"?" in base else b"?"
            extra = rng.choice([b"", b"&perPage=1", b"&perPage=1000", b"&proofs=true", b"&perPage=0"])
            yield Req("GET", base + sep + b"nextPageToken=" + rng.choice(tokens) + extra, hdrs, why=fam)
        elif fam == "json":
            body, what = rng.choice(jbodies)
            ct = rng.choice([b"application/json", b"application/ld+json", b"application/json"])
            yield Req("POST", rng.choice(post_paths), hdrs + [(b"content-type", ct)], body, why=f"{fam}: {what}")
        elif fam == "msgpack":
            body, what = rng.choice(mbodies)
            yield Req("POST", rng.choice(post_paths), hdrs + [(b"content-type", b"application/msgpack")], body,
                      why=f"{fam}: {what}")
        elif fam == "ctype":
            body, what = rng.choice(jbodies + mbodies)
            yield Req(rng.choice(["POST", "POST", "PUT"]), rng.choice(post_paths),
                      hdrs + [(b"content-type", rng.choice(CONTENT_TYPES))], body, why=f"{fam}: {what}")
        elif fam == "headers":
            path = rng.choice(all_paths)
            hs = list(rng.choice(HEADER_SETS))
            yield Req(rng.choice(["GET", "POST", "OPTIONS", "HEAD"]), path, hs, b"{}", why=fam)
        elif fam == "framing":
            body, what = rng.choice(jbodies[:20])
            path = rng.choice(post_paths)
            kind = rng.randrange(5)
            if kind == 0:  # Content-Length larger than the body: the server waits, then sees EOF
                yield Req("POST", path, [(b"content-type", b"application/json"),
                                         (b"content-length", str(len(body) + 10).encode())], body, why="short body",
                          raw_framing=True)
            elif kind == 1:  # a chunked body with a lying chunk size
                yield Req("POST", path, [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
                          b"ffffff\r\n" + body + b"\r\n0\r\n\r\n", why="bad chunk", raw_framing=True)
            elif kind == 2:  # both framings
                yield Req("POST", path, [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked"),
                                         (b"content-length", b"3")], b"0\r\n\r\n", why="both framings",
                          raw_framing=True)
            elif kind == 3:  # a huge announced length
                yield Req("POST", path, [(b"content-type", b"application/json"),
                                         (b"content-length", b"99999999999999")], body, why="huge length",
                          raw_framing=True)
            else:  # a valid chunked body
                yield Req("POST", path, [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
                          b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n", why="chunked", raw_framing=True)
        else:  # well-formed reads that reach the handlers' deeper code
            if seeds.record_ids:
                yield Req("GET", rng.choice([b"/v1/records/" + rng.choice(seeds.record_ids).encode(),
                                             b"/epcis/events?perPage=2", b"/epcis/events?proofs=true&perPage=3",
                                             b"/v1/blocks?from=1&to=1000", b"/v1/changes", b"/epcis/bizSteps?perPage=1",
                                             b"/v1/items/" + quote(rng.choice(seeds.items), safe="").encode()
                                             + b"/history"]), hdrs, why=fam)
            else:
                yield Req("GET", b"/v1/head", hdrs, why=fam)


def collect_seeds(url: str) -> Seeds:
    """Record ids, event ids, items and a page token from the chain behind ``url`` (a running node)."""
    import httpx

    with httpx.Client(base_url=url, timeout=30.0) as c:
        head = c.get("/v1/head").json()["height"]
        r = c.get("/epcis/events", params={"perPage": 50})
        doc = r.json()
        events = doc.get("epcisBody", {}).get("queryResults", {}).get("resultsBody", {}).get("eventList", [])
        first = c.get("/epcis/events", params={"perPage": 1})
        token = first.headers.get("gs1-next-page-token", "")
        record_ids: list[str] = []
        event_ids = [e.get("eventID", "") for e in events if e.get("eventID")]
        items: list[str] = []
        for e in events:
            items += e.get("epcList", []) + e.get("childEPCs", []) + ([e["parentID"]] if "parentID" in e else [])
        for eid in event_ids[:10]:
            rr = c.get("/v1/events/" + quote(eid, safe=""))
            if rr.status_code == 200:
                record_ids.append(rr.headers.get("x-rantai-record-id", ""))
        steps = c.get("/epcis/bizSteps").json().get("member", [])
    return Seeds([r for r in record_ids if r], event_ids, sorted(set(items))[:20], token, head, steps[:5])


def run(urls: list[str], n: int, seed: int, seeds: Seeds | None = None) -> tuple[int, list[tuple[Req, str]]]:
    """Send ``n`` fuzzed requests round-robin to ``urls``; the findings (request, what is wrong)."""
    rng = random.Random(seed)
    seeds = seeds or collect_seeds(urls[0])
    findings: list[tuple[Req, str]] = []
    sent = 0
    hosts = [(urlsplit(u).hostname or "127.0.0.1", urlsplit(u).port or 80) for u in urls]
    for i, req in enumerate(requests(rng, seeds, n)):
        host, port = hosts[(i + i // 10) % len(hosts)]  # families cycle by 10: every family meets every node
        try:
            ans = send(host, port, req)
            problem = check(req, ans)
        except (ValueError, OSError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        sent += 1
        if problem is not None:
            findings.append((req, problem))
    return sent, findings


def describe(req: Req) -> str:
    body = req.body[:120]
    more = "..." if len(req.body) > 120 else ""
    return f"{req.method} {req.target[:160]!r} {req.headers[:3]!r} body={body!r}{more} ({req.why})"


if __name__ == "__main__":
    import argparse
    import time

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("urls", nargs="+")
    ap.add_argument("-n", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    t = time.monotonic()
    sent, found = run(a.urls, a.n, a.seed)
    print(f"{sent} requests in {time.monotonic() - t:.1f} s; {len(found)} findings")
    seen: dict[str, int] = {}
    for req, problem in found:
        key = problem[:60]
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= 3:
            print(f"- {problem}\n    {describe(req)}")
    for k, v in seen.items():
        print(f"{v:6d}  {k}")
