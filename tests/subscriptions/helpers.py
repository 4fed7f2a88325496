"""A webhook subscriber for the tests (an HTTP server on 127.0.0.1 that checks what it receives), events, and
a one-validator node served in-process with its lifespan (so its subscriptions run)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rantai.client.format.epcis import event_hash_id
from rantai.client.format.genesis import Genesis
from rantai.client.format.receipts import Receipt
from rantai.client.http import verify_receipt
from rantai.consensus.crypto import Verifier, sha256


def ev(n: int, step: str = "shipping") -> dict:
    return {"type": "ObjectEvent", "eventTime": "2026-03-01T08:00:00.000+07:00", "eventTimeZoneOffset": "+07:00",
            "epcList": [f"urn:epc:id:sgtin:0614141.107346.{n}"], "action": "OBSERVE", "bizStep": step,
            "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"}}


def wait_for(what: str, fn: Callable[[], bool], timeout: float = 60.0) -> None:
    """A bounded poll (never a timed assertion: the bound only keeps a broken run from hanging)."""
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Receiver:
    """The partner's side of a webhook: checks every delivery as docs/epcis.md tells a partner to.

    Each POST must carry a valid ``GS1-Signature`` (HMAC-SHA256 with the subscription's token), the
    node's Ed25519 signature (``x-rantai-node``/``x-rantai-signature``, checked against the genesis),
    and, with proofs, a receipt per event that verifies against the genesis alone and whose record is
    exactly the delivered event. Events are kept once per eventID (the wire is at-least-once).
    """

    def __init__(self, genesis: Genesis, token: str | None, proofs: bool = True) -> None:
        self.genesis, self.token, self.proofs = genesis, token, proofs
        self.lock = threading.Lock()
        self.posts: list[dict[str, Any]] = []  # every accepted document, in arrival order
        self.events: dict[str, dict] = {}  # eventID -> event, first delivery
        self.order: list[str] = []  # eventIDs in first-delivery order
        self.wire = 0  # events received on the wire (duplicates included)
        self.locs: dict[str, tuple[int, int]] = {}  # eventID -> (height, index), from its receipt (proofs)
        self.fail_next = 0  # answer 500 to this many requests
        self.max_events: int | None = None  # answer 413 to documents with more events
        self.refused = 0
        self.problems: list[str] = []
        self.hold_next = False  # keep the next accepted delivery unanswered until ``release`` is set
        self.holding = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = receiver._handle(dict(self.headers.items()), body)
                if status == 200 and receiver.hold_next:  # kept, but not answered until released
                    receiver.hold_next = False
                    receiver.holding.set()
                    receiver.release.wait(120)
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:  # the node went away meanwhile
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, headers: dict[str, str], body: bytes) -> int:
        h = {k.lower(): v for k, v in headers.items()}
        with self.lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                self.refused += 1
                return 500
            try:
                doc = json.loads(body)
                events = doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
                if self.max_events is not None and len(events) > self.max_events:
                    self.refused += 1
                    return 413
                self._check(h, body, doc, events)
            except Exception as exc:  # a failed check is recorded: the test asserts there is none
                self.problems.append(f"{type(exc).__name__}: {exc}")
                return 400
            self.posts.append(doc)
            for e in events:
                self.wire += 1
                if e["eventID"] not in self.events:
                    self.events[e["eventID"]] = e
                    self.order.append(e["eventID"])
            return 200

    def _check(self, h: dict[str, str], body: bytes, doc: dict, events: list[dict]) -> None:
        if self.token is not None:
            expected = "sha256=" + hmac.new(self.token.encode(), body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(h.get("gs1-signature", ""), expected), "GS1-Signature does not verify"
        validator = self.genesis.validator_by_id[h["x-rantai-node"]]
        ok = Verifier(validator.public_key).verify(bytes.fromhex(h["x-rantai-signature"]), "webhook",
                                                   self.genesis.hash, sha256(body))
        assert ok, "the node's signature does not verify"
        if not self.proofs:
            return
        proofs = doc["rantai:proofs"]
        assert len(proofs) == len(events)
        for e, p in zip(events, proofs, strict=True):
            receipt = Receipt.from_json(json.dumps(p["receipt"]))
            verify_receipt(receipt, self.genesis)
            assert event_hash_id(receipt.record.event) == p["eventID"] == e["eventID"]
            served = {k: v for k, v in e.items() if k not in ("eventID", "recordTime")}
            assert served == receipt.record.event, "the delivered event is not the signed one"
            self.locs[e["eventID"]] = (receipt.height, receipt.index)
