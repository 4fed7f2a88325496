"""The `/epcis/queries` resources against GS1's openapi (../shared/epcis/rest/openapi.json): every answer's
status is one the openapi lists for that path and method, with the headers it names (Location, GS1 versions)
and, for errors, RFC 7807 problem details of a listed type.

Departures, all 400s the openapi does not list: `POST /queries` with a query the engine refuses
(`QueryParameterException`, as `GET /events` answers the same parameters); `POST /queries/{name}/subscriptions`
without `stream` or a `schedule` (`SubscriptionControlsException`, the type the openapi gives subscription errors
elsewhere; its own text calls such a subscription invalid); and `GET /queries/{name}/events` with a parameter
it does not take or a bad page parameter (`QueryParameterException`, exactly as `GET /events`, which answers it).
"""

from __future__ import annotations

import json

import pytest
from epcis_api.helpers import SHARED

from .helpers import Receiver
from .test_subscriptions import LocalNode

OPENAPI = SHARED / "rest" / "openapi.json"
pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(not OPENAPI.is_file(), reason="openapi not found"),
              pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")]
DEPARTURES = {("POST", "/queries"): {"epcisException:QueryParameterException", "epcisException:ValidationException"},
              ("POST", "/queries/{queryName}/subscriptions"): {"epcisException:SubscriptionControlsException"},
              ("GET", "/queries/{queryName}/events"): {"epcisException:QueryParameterException"}}


def template(path: str) -> str:
    parts = path.split("?")[0][len("/epcis"):].split("/")
    names = ["queries", "{queryName}", None, "{subscriptionID}"]
    return "/".join([""] + [names[i - 1] or parts[i] for i in range(1, len(parts))])


def check(spec: dict, method: str, path: str, r) -> None:
    t = template(path)
    listed = spec["paths"][t][method.lower()]["responses"]
    status = str(r.status_code)
    if status == "400" and r.json()["type"] in DEPARTURES.get((method, t), set()):
        return
    assert status in listed, (method, path, r.text)
    resp = listed[status]
    if "$ref" in resp:
        resp = spec["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
    for h in resp.get("headers", {}):
        if h in ("Location", "GS1-EPCIS-Version", "GS1-CBV-Version"):
            assert h.lower() in r.headers, (method, path, h)
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["status"] == r.status_code and body["title"] and body["detail"]
        content = resp.get("content", {})
        schema = (content.get("application/problem+json") or content.get("application/json") or {}).get("schema", {})
        enum = [x["properties"]["type"]["enum"] for x in schema.get("allOf", []) if "properties" in x]
        if enum and r.status_code != 404:  # 404: the openapi's example and enum disagree (NoSuchResource/Name)
            assert body["type"] in enum[0], (path, body["type"], enum[0])


def test_queries_and_subscriptions_answer_per_the_openapi(tmp_path):
    spec = json.loads(OPENAPI.read_text())
    local = LocalNode(tmp_path)
    c = local.start()
    receiver = Receiver(local.net.genesis, token=None, proofs=False)
    try:
        def call(method: str, path: str, **kw):
            r = c.request(method, path, **kw)
            check(spec, method, path, r)
            return r

        local.submit(3)
        r = call("POST", "/epcis/queries", json={"name": "q", "query": {"EQ_bizStep": "shipping"}})
        assert r.status_code == 201
        call("POST", "/epcis/queries", json={"name": "q", "query": {}})  # 409
        call("POST", "/epcis/queries", json={"name": "r", "query": {"EQ_nope": "x"}})  # 400 (departure)
        call("POST", "/epcis/queries", content=b"x", headers={"content-type": "text/plain"})  # 415
        call("GET", "/epcis/queries", headers={"accept": "application/xml"})  # 406
        assert call("GET", "/epcis/queries").status_code == 200
        assert call("GET", "/epcis/queries/q").status_code == 200
        call("GET", "/epcis/queries/none")  # 404
        assert call("GET", "/epcis/queries/q/events").status_code == 200
        call("GET", "/epcis/queries/q/events?EQ_action=ADD")  # 400
        call("GET", "/epcis/queries/none/events")  # 404
        r = call("POST", "/epcis/queries/q/subscriptions", json={"dest": receiver.url, "stream": True})
        assert r.status_code == 201
        sid = r.json()["subscriptionID"]
        call("POST", "/epcis/queries/q/subscriptions", json={"dest": receiver.url})  # 400 (departure)
        call("POST", "/epcis/queries/none/subscriptions", json={"dest": receiver.url, "stream": True})  # 404
        assert call("GET", "/epcis/queries/q/subscriptions").status_code == 200
        assert call("GET", f"/epcis/queries/q/subscriptions/{sid}").status_code == 200
        call("GET", "/epcis/queries/q/subscriptions/none")  # 404
        for path, methods in [("/epcis/queries", {"GET", "POST"}), ("/epcis/queries/q", {"GET", "DELETE"}),
                              ("/epcis/queries/q/subscriptions", {"GET", "POST"}),
                              (f"/epcis/queries/q/subscriptions/{sid}", {"GET", "DELETE"}),
                              ("/epcis/queries/q/events", {"GET"})]:
            r = call("OPTIONS", path)
            assert r.status_code == 204 and methods <= set(r.headers["allow"].split(", ")), (path, r.headers)
        assert call("DELETE", f"/epcis/queries/q/subscriptions/{sid}").status_code == 204
        assert call("DELETE", "/epcis/queries/q").status_code == 204
        call("DELETE", "/epcis/queries/q")  # 404
    finally:
        receiver.close()
        local.stop()
