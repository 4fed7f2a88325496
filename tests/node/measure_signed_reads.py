"""What a signed read costs (docs/performance.md, "Signed reads"): `python tests/node/measure_signed_reads.py`.

`rantai bench` has no read shape, so this measures reads on their own: a 4-validator devnet whose read policy is
`public` (so the same node answers unsigned and signed reads of the same path; a signed read is checked in full
under every policy), one record committed, then N sequential `GET /v1/records/{id}` (msgpack) from one client,
unsigned and signed, alternating rounds so drift hits both alike. Also the pure costs: signing one read (client)
and checking one (node: parse, rebuild the base, Ed25519 verify).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ports.py

from rantai.client.devnet import Devnet  # noqa: E402
from rantai.client.format import signed_requests as sr  # noqa: E402
from rantai.client.format.encoding import encode  # noqa: E402
from rantai.client.format.records import sign_event  # noqa: E402
from rantai.client.http import SignedReads  # noqa: E402


def pure(n: int, signer) -> tuple[float, float]:
    t0 = time.perf_counter()
    for i in range(n):
        h = sr.sign_request(signer, "GET", "127.0.0.1:7100", "http", "/v1/records/" + "ab" * 32, 1796202000 + i)
    sign_us = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        sr.verify(h["Signature-Input"], h["Signature"], method="GET", authority="127.0.0.1:7100",
                  path="/v1/records/" + "ab" * 32, query="?", now=1796202000 + n)
    return sign_us, (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", type=int, default=2000, help="reads per round")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    from ports import free_base_port

    with tempfile.TemporaryDirectory() as d:
        net = Devnet(Path(d) / "net", validators=4, base_port=free_base_port(4), read_policy="public",
                     params={"batch_timeout_ms": 5})
        net.start()
        try:
            net.wait_ready(timeout=60)
            acme = net.member_key("acme")
            sign_us, verify_us = pure(2000, acme)
            record = sign_event(acme, net.genesis, {
                "type": "ObjectEvent", "eventTime": "2026-03-01T08:00:00.000+07:00", "eventTimeZoneOffset": "+07:00",
                "epcList": ["urn:epc:id:sgtin:0614141.107346.1"], "action": "OBSERVE", "bizStep": "shipping"})
            url = net.urls[0]
            r = httpx.post(url + "/v1/records?wait=commit", content=encode({"records": [record.raw]}),
                           headers={"content-type": "application/msgpack"}, timeout=30)
            assert r.status_code == 200, r.text
            path = f"/v1/records/{record.id.hex()}"
            results: dict[str, list[float]] = {"unsigned": [], "signed": []}
            with httpx.Client(base_url=url, headers={"accept": "application/msgpack"}) as plain, \
                    httpx.Client(base_url=url, headers={"accept": "application/msgpack"},
                                 auth=SignedReads(acme)) as signed:
                for c in (plain, signed):  # warm the connections
                    for _ in range(50):
                        assert c.get(path).status_code == 200
                for _ in range(args.rounds):
                    for name, c in (("unsigned", plain), ("signed", signed)):
                        t0 = time.perf_counter()
                        for _ in range(args.reads):
                            c.get(path)
                        results[name].append(args.reads / (time.perf_counter() - t0))
            print(f"pure: sign {sign_us:.0f} us/read (client), check {verify_us:.0f} us/read (node)")
            for name, rates in results.items():
                print(f"{name:9} GET {path[:22]}…: median {statistics.median(rates):,.0f} reads/s "
                      f"(rounds: {', '.join(f'{x:,.0f}' for x in rates)})")
            u, s = statistics.median(results["unsigned"]), statistics.median(results["signed"])
            print(f"signed-read cost: {(1 / s - 1 / u) * 1e6:.0f} us per read "
                  f"({(1 - s / u) * 100:.0f} % fewer reads/s)")
        finally:
            net.stop()


if __name__ == "__main__":
    main()
