"""Helpers for the process tests: free loopback ports, a devnet per test, bounded waits, HTTP calls."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from ports import free_base_port  # tests/ports.py (tests/ is on sys.path through its conftest)

from rantai.client.devnet import Devnet
from rantai.client.format.encoding import decode, encode
from rantai.client.format.records import SignedRecord, sign_event
from rantai.client.http import SignedReads

from .conftest import event

MP = {"content-type": "application/msgpack", "accept": "application/msgpack"}


def make_devnet(tmp_path, n: int = 4, read_policy: str | None = None, **params: int) -> Devnet:
    defaults = {"checkpoint_interval": 4, "window": 4, "view_change_timeout_ms": 1000, "batch_timeout_ms": 5}
    net = Devnet(tmp_path / "devnet", validators=n, base_port=free_base_port(n), params={**defaults, **params},
                 read_policy=read_policy)
    net.start()
    net.wait_ready(timeout=60)
    return net


def wait_until(what: str, fn: Callable[[], bool], timeout: float = 120.0, every: float = 0.1,
               describe: Callable[[], object] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if fn():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            detail = ""
            if describe is not None:
                try:
                    detail = f"; state: {describe()}"
                except Exception as exc:  # the state is a hint only
                    detail = f"; state unavailable ({exc})"
            raise AssertionError(f"timed out waiting for {what}{detail}")
        time.sleep(every)


class Api:
    def __init__(self, net: Devnet, reader: str = "acme") -> None:
        self.net = net
        self.urls = net.urls
        self.genesis = net.genesis
        self.acme = net.member_key("acme")
        # reads are signed (docs/api.md); ``reader``: a member the test never removes
        self.http = httpx.Client(timeout=60.0, auth=SignedReads(net.member_key(reader)))

    def records(self, n: int) -> list[SignedRecord]:
        return [sign_event(self.acme, self.genesis, event()) for _ in range(n)]

    def submit(self, i: int, records: list[SignedRecord], wait: bool = True,
               timeout_ms: int = 30000) -> tuple[int, list]:
        q = f"?wait=commit&timeout_ms={timeout_ms}" if wait else ""
        r = self.http.post(self.urls[i] + "/v1/records" + q, content=encode({"records": [x.raw for x in records]}),
                           headers=MP)
        return r.status_code, decode(r.content).get("results", [])

    def height(self, i: int) -> int:
        return decode(self.http.get(self.urls[i] + "/v1/head", headers=MP, timeout=2.0).content)["height"]

    def status(self, i: int) -> dict:
        return self.http.get(self.urls[i] + "/v1/status", timeout=5.0).json()

    def blocks(self, i: int, start: int, stop: int) -> list[bytes]:
        out = []
        while start <= stop:
            r = self.http.get(self.urls[i] + "/v1/blocks", params={"from": start, "to": min(stop, start + 999)})
            import msgpack
            items = list(msgpack.Unpacker(__import__("io").BytesIO(r.content), raw=False))
            if not items:
                break
            out += [encode(x) for x in items]
            start += len(items)
        return out

    def snapshot(self) -> list:
        """Height, view, mode and mempool of every node that answers (for failure messages)."""
        out = []
        for i, url in enumerate(self.urls):
            try:
                s = self.http.get(url + "/v1/status", timeout=2.0).json()
                out.append((i, s["height"], s["view"], s["mode"], s["mempool"], s["counters"]))
            except Exception:
                out.append((i, "down"))
        return out

    def has_record(self, i: int, rid: bytes) -> bool:
        return self.http.get(self.urls[i] + f"/v1/records/{rid.hex()}", timeout=5.0).status_code == 200

    def close(self) -> None:
        self.http.close()
