"""The client side of the network-namespace test, run inside the client namespace (``ip netns exec``).

The test process stays in the host's namespace, which has no address on the test's network; it
drives this agent through its stdin/stdout, one JSON object per line each way. Ops:

- ``http``: one request with the given TLS trust (``ca``, ``cert``/``key``, ``pins``) -> status and body, or error
- ``fingerprint``: SHA-256 of the certificate a new connection to ``url`` is served
- ``load_start`` / ``count`` / ``load_stop``: a background load of verified submissions (batches of
  ``batch`` records, failing over between the nodes) and how many records committed so far
- ``read``: fetch and verify a committed record; the hook where member-signed reads go
- ``quit``
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import traceback
from typing import Any

import httpx

from rantai.client.format.keys import load_key
from rantai.client.format.pins import fingerprint
from rantai.client.http import Client, SignedReads
from rantai.client.tls import context


def _verify(msg: dict[str, Any]) -> Any:
    return context(msg.get("ca"), msg.get("cert"), msg.get("key"), msg.get("pins", ()))


def _event(serial: int) -> dict[str, Any]:
    return {
        "type": "ObjectEvent",
        "eventTime": "2026-03-01T08:00:00.000+07:00",
        "eventTimeZoneOffset": "+07:00",
        "epcList": [f"urn:epc:id:sgtin:0614141.107346.{serial}"],
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"},
    }


class Load:
    """Verified submissions in a loop, counting what committed (every receipt checked against the genesis)."""

    def __init__(self, msg: dict[str, Any]) -> None:
        self.msg = msg
        self.committed = 0
        self.errors = 0
        self.last_error = ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        m = self.msg
        serial = m.get("serial_base", 10_000_000)
        with Client(m["genesis"], m["urls"], load_key(m["key"]), timeout=5.0, wait_timeout=20.0,
                    verify=_verify(m)) as client:
            while not self.stop.is_set():
                events = [_event(serial + k) for k in range(m.get("batch", 10))]
                serial += len(events)
                try:
                    results = client.submit_many(events, batch=len(events), raise_on_error=False)
                except Exception as exc:  # noqa: BLE001 - counted and reported; the load goes on
                    self.errors += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                    continue
                for r in results:
                    if isinstance(r, Exception):
                        self.errors += 1
                        self.last_error = f"{type(r).__name__}: {r}"[:500]
                    else:
                        self.committed += 1


def handle(msg: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    op = msg["op"]
    if op == "http":
        try:
            auth = SignedReads(load_key(msg["reader_key"])) if msg.get("reader_key") else None  # a signed read
            r = httpx.request(msg.get("method", "GET"), msg["url"], content=msg.get("body"), timeout=10.0,
                              verify=_verify(msg), auth=auth)
        except httpx.HTTPError as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        try:
            body: Any = r.json()
        except ValueError:
            body = r.text
        return {"status": r.status_code, "body": body}
    if op == "fingerprint":
        host, port = msg["url"].removeprefix("https://").rsplit(":", 1)
        pem = ssl.get_server_certificate((host, int(port)), timeout=10)
        return {"sha256": fingerprint(ssl.PEM_cert_to_DER_cert(pem))}
    if op == "load_start":
        state["load"] = Load(msg)
        return {"ok": True}
    if op in ("count", "load_stop"):
        load: Load = state["load"]
        if op == "load_stop":
            load.stop.set()
            load.thread.join(timeout=60)
        return {"committed": load.committed, "errors": load.errors, "last_error": load.last_error,
                "running": load.thread.is_alive()}
    if op == "read":
        # A member's read through the verifying client: signed (docs/api.md "Signed reads") and checked.
        reader = load_key(msg["key"]) if msg.get("key") else None  # signed reads (docs/api.md "Signed reads")
        with Client(msg["genesis"], msg["urls"], reader, timeout=5.0, verify=_verify(msg)) as client:
            head = client.head()
            return {"height": head.height}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    state: dict[str, Any] = {}
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("op") == "quit":
            break
        try:
            reply = handle(msg, state)
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with it
            reply = {"exception": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
