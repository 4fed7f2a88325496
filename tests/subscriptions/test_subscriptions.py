"""Named queries and subscriptions (node/subscriptions.py) on a one-validator node served in-process.

Goal: the `/epcis/queries` resources answer per GS1's openapi (status codes, Location, RFC 7807 errors);
a named query's events are exactly `GET /epcis/events`' with its parameters; a webhook subscriber
receives every matching event once (after deduplication by eventID) in chain order, signed (HMAC and
the node's key) and with receipts that verify against the genesis alone — through failed deliveries,
413 answers and a node restart; a WebSocket subscriber receives new events; schedules fire.
Method: the node runs with its lifespan in Starlette's TestClient (so its subscriptions run); the
subscriber is a real HTTP server on 127.0.0.1 (tests/subscriptions/helpers.py). Waits are bounded polls.
"""

from __future__ import annotations

import json
import warnings
from datetime import datetime, timezone
from pathlib import Path

import pytest

with warnings.catch_warnings():  # Starlette's TestClient still runs on httpx, and says it will not for long
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient, WebSocketDenialResponse

from epcis_api.helpers import make_net

from rantai.client.format.encoding import encode
from rantai.client.format.records import sign_event
from rantai.node import subscriptions as subs_mod
from rantai.node.app import create_app
from rantai.node.driver import Node
from rantai.node.subscriptions import ControlError, Schedule

from .helpers import Receiver, ev, wait_for

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")]

MP = {"content-type": "application/msgpack"}


class LocalNode:
    """One validator (a chain of its own) with its API; ``restart`` reopens the same data directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.net = make_net(1, params={"batch_timeout_ms": 5})
        self.dir = tmp_path / "v0"
        self.client: TestClient | None = None
        self.serial = 0

    def start(self) -> TestClient:
        node = Node(genesis=self.net.genesis, signer=self.net.validators[0], data_dir=self.dir)
        self.client = TestClient(create_app(node))
        self.client.__enter__()
        return self.client

    def stop(self) -> None:
        if self.client is not None:
            self.client.__exit__(None, None, None)
            self.client = None

    def restart(self) -> TestClient:
        self.stop()
        return self.start()

    def submit(self, n: int, step: str = "shipping") -> list[str]:
        """``n`` events committed (``wait=commit``); their record ids."""
        assert self.client is not None
        recs = []
        for _ in range(n):
            recs.append(sign_event(self.net.acme, self.net.genesis, ev(self.serial, step)))
            self.serial += 1
        r = self.client.post("/v1/records?wait=commit", content=encode({"records": [x.raw for x in recs]}),
                             headers=MP)
        assert r.status_code == 200, r.text
        return [x.id.hex() for x in recs]


@pytest.fixture
def local(tmp_path):
    n = LocalNode(tmp_path)
    n.start()
    yield n
    n.stop()


@pytest.fixture
def receiver(local):
    r = Receiver(local.net.genesis, token="13df38d8275b13f05704629e5f1cf3d45d6132d5")
    yield r
    r.close()


def events_of(doc: dict) -> list[dict]:
    return doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]


def problem(r, status: int, kind: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == f"epcisException:{kind}" and body["status"] == status and body["detail"]
    return body


def create(c: TestClient, name: str = "ship", query: dict | None = None) -> None:
    r = c.post("/epcis/queries", json={"name": name, "query": query or {"EQ_bizStep": ["shipping"]}})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/epcis/queries/{name}"


def subscribe(c: TestClient, receiver: Receiver, name: str = "ship", **extra) -> dict:
    body = {"dest": receiver.url, "signatureToken": receiver.token, "stream": True, "proofs": True, **extra}
    r = c.post(f"/epcis/queries/{name}/subscriptions", json=body)
    assert r.status_code == 201, r.text
    sub = r.json()
    assert r.headers["location"] == f"/epcis/queries/{name}/subscriptions/{sub['subscriptionID']}"
    assert "signatureToken" not in sub and sub["signed"] is True  # the secret is never shown back
    return sub


# -- named queries --------------------------------------------------------------------------------------

def test_named_query_resources(local):
    c = local.client
    create(c, "ship")
    create(c, "recv", {"EQ_bizStep": "receiving", "eventType": ["ObjectEvent"]})
    problem(c.post("/epcis/queries", json={"name": "ship", "query": {}}), 409, "ResourceAlreadyExistsException")
    problem(c.post("/epcis/queries", json={"name": "x", "query": {"EQ_nope": "1"}}), 400, "QueryParameterException")
    problem(c.post("/epcis/queries", json={"name": "x", "query": {"perPage": 3}}), 400, "QueryParameterException")
    problem(c.post("/epcis/queries", json={"name": "bad/name", "query": {}}), 400, "ValidationException")
    problem(c.post("/epcis/queries", json={"query": {}}), 400, "ValidationException")
    problem(c.post("/epcis/queries", content=b"{", headers={"content-type": "application/json"}), 400,
            "ValidationException")
    problem(c.post("/epcis/queries", content=b"x", headers={"content-type": "text/plain"}), 415,
            "UnsupportedMediaTypeException")

    r = c.get("/epcis/queries/recv")
    assert r.status_code == 200 and r.json()["query"] == {"EQ_bizStep": "receiving", "eventType": ["ObjectEvent"]}
    assert r.headers["GS1-EPCIS-Version"] == "2.0.0"
    problem(c.get("/epcis/queries/nope"), 404, "NoSuchNameException")

    first = c.get("/epcis/queries?perPage=1")
    assert [q["name"] for q in first.json()] == ["recv"]
    nxt = c.get(first.headers["link"].split(">")[0][1:])
    assert [q["name"] for q in nxt.json()] == ["ship"] and "link" not in nxt.headers
    problem(c.get("/epcis/queries?perPage=0"), 400, "QueryParameterException")
    problem(c.get("/epcis/queries", headers={"accept": "application/xml"}), 406, "NotAcceptableException")
    problem(c.get("/epcis/queries/ship", headers={"GS1-EPCIS-Min": "3.0.0"}), 406, "NotAcceptableException")

    assert c.delete("/epcis/queries/recv").status_code == 204
    problem(c.delete("/epcis/queries/recv"), 404, "NoSuchNameException")
    assert [q["name"] for q in c.get("/epcis/queries").json()] == ["ship"]


def test_named_query_events_answer_as_the_query_endpoint(local):
    c = local.client
    local.submit(5, "shipping")
    local.submit(3, "receiving")
    create(c, "ship")
    direct = c.get("/epcis/events?EQ_bizStep=shipping&perPage=2&proofs=true")
    named = c.get("/epcis/queries/ship/events?perPage=2&proofs=true")
    assert named.status_code == 200 and named.headers["content-type"] == direct.headers["content-type"]
    a, b = direct.json(), named.json()
    assert b["epcisBody"]["queryResults"].pop("queryName") == "ship"
    a["epcisBody"]["queryResults"].pop("queryName")
    assert a == b
    seen = [e["eventID"] for e in events_of(named.json())]
    link = named.headers["link"]
    assert link.startswith("</epcis/queries/ship/events?") and 'rel="next"' in link
    while "link" in named.headers:
        named = c.get(named.headers["link"].split(">")[0][1:])
        assert named.status_code == 200, named.text
        seen += [e["eventID"] for e in events_of(named.json())]
    every = c.get("/epcis/events?EQ_bizStep=shipping&perPage=100").json()
    assert seen == [e["eventID"] for e in events_of(every)] and len(seen) == 5
    problem(c.get("/epcis/queries/ship/events?EQ_action=ADD"), 400, "QueryParameterException")
    problem(c.get("/epcis/queries/ship/events?nextPageToken=zz"), 400, "QueryParameterException")
    problem(c.get("/epcis/queries/nope/events"), 404, "NoSuchNameException")


# -- webhooks ---------------------------------------------------------------------------------------------

def test_subscription_controls_are_checked(local, receiver):
    c = local.client
    create(c)
    url = "/epcis/queries/ship/subscriptions"
    for body, why in [
        ({"dest": receiver.url}, "stream=true or a schedule"),
        ({"dest": receiver.url, "stream": True, "schedule": {"minute": "5"}}, "mutually exclusive"),
        ({"dest": receiver.url, "stream": False}, "stream=true or a schedule"),
        ({"dest": "ftp://example.org/x", "stream": True}, "not an http(s) URL"),
        ({"stream": True}, "dest"),
        ({"dest": receiver.url, "stream": True, "reportIfEmpty": True}, "scheduled subscriptions only"),
        ({"dest": receiver.url, "schedule": {"minute": "61"}}, "outside 0..59"),
        ({"dest": receiver.url, "schedule": {"dayOfMonth": "31", "month": "2"}}, "matches no date"),
        ({"dest": receiver.url, "schedule": {"fortnight": "1"}}, "unknown field"),
        ({"dest": receiver.url, "minute": "5"}, "inside \"schedule\""),
        ({"dest": receiver.url, "stream": True, "initialRecordTime": "yesterday"}, "initialRecordTime"),
        ({"dest": receiver.url, "stream": True, "initialRecordTime": "2026-01-01T00:00:00"}, "no time zone"),
        ({"dest": receiver.url, "stream": True, "colour": "blue"}, "unknown subscription field"),
    ]:
        body = problem(c.post(url, json=body), 400, "SubscriptionControlsException")
        assert why in body["detail"], (why, body)
    problem(c.post("/epcis/queries/nope/subscriptions", json={"dest": receiver.url, "stream": True}), 404,
            "NoSuchNameException")
    sub = subscribe(c, receiver)
    listed = c.get(url).json()
    assert [s["subscriptionID"] for s in listed] == [sub["subscriptionID"]]
    one = c.get(f"{url}/{sub['subscriptionID']}").json()
    assert one["dest"] == receiver.url and one["stream"] is True and "signatureToken" not in one
    problem(c.get(f"{url}/not-a-subscription"), 404, "NoSuchResourceException")
    assert c.delete(f"{url}/{sub['subscriptionID']}").status_code == 204
    problem(c.delete(f"{url}/{sub['subscriptionID']}"), 404, "NoSuchResourceException")
    assert c.get(url).json() == []


def test_webhook_delivers_every_event_once_in_order_across_failures_and_a_restart(local, receiver):
    c = local.client
    local.submit(2)  # before the subscription: not delivered (it starts at the next block)
    create(c)
    sub = subscribe(c, receiver)
    sid = sub["subscriptionID"]
    url = f"/epcis/queries/ship/subscriptions/{sid}"

    receiver.fail_next = 2  # the first two POSTs fail: retried with backoff, shown on the subscription
    wanted = local.submit(4)
    local.submit(2, "receiving")  # not matching
    wait_for("a failed delivery on the subscription", lambda: "lastError" in c.get(url).json()
             or len(receiver.events) >= 4)
    wait_for("4 events", lambda: len(receiver.events) >= 4)
    assert receiver.refused == 2
    status = c.get("/v1/status").json()["subscriptions"]
    assert status["queries"] == 1 and status["webhooks"] == 1 and status["counters"]["webhook-retries"] == 2

    receiver.max_events = 1  # "send smaller batches": the node halves its batch until accepted
    wanted += local.submit(5)
    wait_for("9 events", lambda: len(receiver.events) >= 9)
    assert all(len(events_of(d)) <= 1 for d in receiver.posts[-5:])
    receiver.max_events = None

    c = local.restart()  # the subscription and its cursor survive; the node resumes from the cursor
    assert c.get(url).status_code == 200
    wanted += local.submit(3)
    wait_for("12 events", lambda: len(receiver.events) >= 12)

    local.stop()  # events committed while the webhook is down are delivered after the restart
    receiver.fail_next = 3
    c = local.start()
    wanted += local.submit(3)
    wait_for("15 events", lambda: len(receiver.events) >= 15)
    assert receiver.problems == []
    assert len(receiver.events) == 15 and receiver.wire >= 15
    records = {json.dumps(p["record"]) for d in receiver.posts for p in d["rantai:proofs"]}
    assert records == {json.dumps(w) for w in wanted}  # exactly the matching records, none other
    locs = [receiver.locs[e] for e in receiver.order]
    assert locs == sorted(locs)  # chain order
    state = c.get(url).json()
    assert "lastError" not in state and state["lastNotifiedAt"]


def test_webhook_without_proofs_or_token_and_initial_record_time(local):
    c = local.client
    local.submit(3)
    create(c)
    rec = Receiver(local.net.genesis, token=None, proofs=False)
    try:
        r = c.post("/epcis/queries/ship/subscriptions",
                   json={"dest": rec.url, "stream": True, "initialRecordTime": "2000-01-01T00:00:00Z"})
        assert r.status_code == 201 and r.json()["signed"] is False
        wait_for("the 3 earlier events", lambda: len(rec.events) == 3)  # from initialRecordTime, not from now
        local.submit(1)
        wait_for("the new event", lambda: len(rec.events) == 4)
        assert rec.problems == [] and all("rantai:proofs" not in d for d in rec.posts)
    finally:
        rec.close()


def test_read_policy_hook_filters_deliveries(local, receiver, monkeypatch):
    """``may_see`` is the one gate: what it refuses is never sent (the read policy plugs in there)."""
    c = local.client
    create(c)
    subscribe(c, receiver)
    hidden = {f"urn:epc:id:sgtin:0614141.107346.{local.serial + i}" for i in (1, 3)}
    monkeypatch.setattr(subs_mod, "may_see", lambda node, reader, receipt: receipt.record.event["epcList"][0]
                        not in hidden)
    local.submit(4)
    wait_for("the visible events", lambda: len(receiver.events) >= 2)
    local.submit(1)
    wait_for("the next event", lambda: len(receiver.events) >= 3)
    sent = [e["epcList"][0] for e in receiver.events.values()]
    assert hidden.isdisjoint(sent) and len(sent) == 3


# -- WebSockets ---------------------------------------------------------------------------------------------

def test_websocket_subscriber_receives_new_events(local):
    c = local.client
    local.submit(2)
    create(c)
    with c.websocket_connect("/epcis/queries/ship/events?stream=true&proofs=true") as ws:
        ids = local.submit(3)
        local.submit(1, "receiving")
        got: list[dict] = []
        while len(got) < 3:
            doc = json.loads(ws.receive_text())
            assert doc["type"] == "EPCISQueryDocument" and doc["epcisBody"]["queryResults"]["queryName"] == "ship"
            got += [p["record"] for p in doc["rantai:proofs"]]
        assert got == ids
        more = local.submit(1)
        doc = json.loads(ws.receive_text())
        assert [p["record"] for p in doc["rantai:proofs"]] == more


def test_websocket_refusals_are_problem_details(local):
    c = local.client
    create(c)
    for path, status in [("/epcis/queries/ship/events", 400), ("/epcis/queries/ship/events?stream=true&minute=5", 400),
                         ("/epcis/queries/ship/events?stream=maybe", 400), ("/epcis/queries/ship/events?x=1", 400),
                         ("/epcis/queries/nope/events?stream=true", 404)]:
        with pytest.raises(WebSocketDenialResponse) as info:
            with c.websocket_connect(path):
                pass
        assert info.value.status_code == status, path
        assert info.value.headers["content-type"].startswith("application/problem+json")


def test_websocket_closes_when_its_query_is_deleted(local):
    c = local.client
    create(c)
    with c.websocket_connect("/epcis/queries/ship/events?stream=true") as ws:
        assert c.delete("/epcis/queries/ship").status_code == 204
        message = ws.receive()
        assert message["type"] == "websocket.close" and message["code"] == 1000
        assert message["reason"] == "the named query was deleted"


# -- schedules ----------------------------------------------------------------------------------------------

def test_schedule_semantics():
    t = datetime(2026, 3, 1, 0, 0, 0, tzinfo=timezone.utc)  # a Sunday
    daily = Schedule.parse({"hour": "1", "minute": "5"})
    assert daily.next_after(t) == datetime(2026, 3, 1, 1, 5, 0, tzinfo=timezone.utc)
    assert daily.next_after(datetime(2026, 3, 1, 1, 5, 0, tzinfo=timezone.utc)) == \
        datetime(2026, 3, 2, 1, 5, 0, tzinfo=timezone.utc)
    half = Schedule.parse({"second": "0/30"})
    assert half.next_after(t) == datetime(2026, 3, 1, 0, 0, 30, tzinfo=timezone.utc)
    monday = Schedule.parse({"dayOfWeek": "1", "hour": "[8-9]"})
    assert monday.next_after(t) == datetime(2026, 3, 2, 8, 0, 0, tzinfo=timezone.utc)
    leap = Schedule.parse({"month": "2", "dayOfMonth": "29", "hour": "0"})
    assert leap.next_after(t) == datetime(2028, 2, 29, 0, 0, 0, tzinfo=timezone.utc)
    lists = Schedule.parse({"minute": "0,30", "hour": "12"})
    assert lists.next_after(datetime(2026, 3, 1, 12, 10, tzinfo=timezone.utc)) == \
        datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc)
    for bad in [{}, {"hour": "24"}, {"minute": "a"}, {"second": "0/0"}, {"month": "4", "dayOfMonth": "31"},
                {"hour": True}]:
        with pytest.raises(ControlError):
            Schedule.parse(bad)
