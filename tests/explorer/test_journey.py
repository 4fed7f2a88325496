"""The explorer page on a real devnet: the demo's coffee journey, verified in headless Chromium.

A module fixture runs the demo (client/demo.py: a 4-validator devnet, the journey, the café joining by
governance) and keeps the validators up. The page is opened on a validator and, for the tampering
test, through a proxy that flips one byte of one receipt in the item history it forwards: the page
must then show that step failed and name the check. The journey screenshot in docs/ is made here.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.console import Console

from rantai.client.demo import run_demo
from rantai.client.devnet import Devnet
from rantai.client.format.encoding import decode, encode
from rantai.client.format.epcis.event_hash import event_hash_id

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DOCS = Path(__file__).resolve().parents[2] / "docs"
SIGNATURE = b"\xa9signature\xc4\x40"  # the signed record's signature entry: then its 64 bytes
# RFC 9421 Appendix B.1.4 test-key-ed25519 (docs/api.md, "Signed reads", worked example)
RFC9421_TEST_KEY = ("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n"
                    "-----END PRIVATE KEY-----\n")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, browser) -> Iterator[dict[str, Any]]:
    from ports import free_base_port

    nets: list[Devnet] = []

    def factory(*args: Any, **kwargs: Any) -> Devnet:
        nets.append(Devnet(*args, **kwargs))
        return nets[-1]

    d = tmp_path_factory.mktemp("explorer") / "demo"
    try:
        out = run_demo(d, base_port=free_base_port(4), keep=True, console=Console(file=open("/dev/null", "w")),
                       devnet_factory=factory)
        yield {**out, "urls": nets[0].urls, "dir": d}
    finally:
        for net in nets:
            net.stop()


def open_page(browser: Any, url: str) -> Any:
    page = browser.new_page()
    page.set_viewport_size({"width": 1000, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=120_000)
    page.errors = errors  # type: ignore[attr-defined]
    return page


def journey(page: Any) -> list[dict[str, Any]]:
    """Each step of the timeline as the DOM shows it: its text and every check's name and state."""
    return page.eval_on_selector_all("ol.timeline > li.step", """(steps) => steps.map((s) => ({
        record: s.dataset.record, what: s.querySelector('.what').textContent, failed: s.dataset.failed || null,
        text: s.textContent,
        checks: [...s.querySelectorAll('[data-check]')].map((c) => [c.dataset.check, c.dataset.state])}))""")


def test_every_step_of_the_coffee_bag_journey_verifies_in_the_browser(browser, demo, tmp_path):
    page = open_page(browser, f"{demo['urls'][0]}/explorer/")
    try:
        assert page.get_attribute("[data-genesis-hash]", "data-genesis-hash") == \
            Devnet(demo["dir"]).genesis.hash.hex()
        assert page.get_attribute("#governance-status [data-check]", "data-state") == "verified"
        # the home view: recent blocks, each verified
        states = page.eval_on_selector_all("tbody tr [data-check]", "(cs) => cs.map((c) => c.dataset.state)")
        assert states and set(states) == {"verified"}
        page.fill("#q", demo["bag"])
        page.click("#search button")
        page.wait_for_selector("[data-summary]", timeout=120_000)
        steps = journey(page)
        # the sacks' commissioning, roasting, packing, shipping, receiving, unpacking, shipping to the café,
        # the sale: every record that names the bag, its pallet or its sacks
        assert len(steps) == demo["traced"] >= 8
        for s in steps:
            assert s["checks"] == [["header", "verified"], ["record signature", "verified"],
                                   ["Merkle path", "verified"], ["commit certificate", "verified"]], s
        assert any("produced by a transformation" in s["what"] for s in steps)
        assert any("packed into" in s["what"] for s in steps)
        assert page.get_attribute("[data-summary]", "data-summary") == "verified"
        assert "kafe-senja" in steps[-1]["text"]  # the café joined by governance: its name comes from the change chain
        assert page.errors == []
        # docs/explorer-journey.png: rewritten when asked (RANTAI_SCREENSHOTS=1) or missing, so that a test run
        # does not leave a changed image behind each time (the demo's serial numbers differ from run to run)
        shot = DOCS / "explorer-journey.png"
        if os.environ.get("RANTAI_SCREENSHOTS") != "1" and shot.exists():
            shot = tmp_path / shot.name
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    finally:
        page.close()


class _Proxy(http.server.BaseHTTPRequestHandler):
    """Forwards GETs to the validator; in the history of ``item`` flips one byte of one receipt's
    record signature. Remembers the requests' signature headers."""

    upstream = ""
    item = ""
    tamper_index = 1
    members_only = False  # answer unsigned API reads 401 read.unsigned, as the `members` read policy does
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "signature", "signature-input")}
        type(self).seen.append({"path": self.path, "host": self.headers.get("host", ""), **headers})
        if self.members_only and self.path.startswith("/v1/") and "Signature" not in self.headers:
            body = b'{"error":"read.unsigned","message":"this node serves members only: sign the request"}'
            self.send_response(401)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        answer = httpx.get(self.upstream + self.path, headers=headers, timeout=30)
        body = answer.content
        if self.tamper_index is not None and self.path.startswith(f"/v1/items/{quote(self.item, safe='')}/history") \
                and answer.status_code == 200:
            doc = decode(body)
            raw = bytearray(doc["receipts"][self.tamper_index]["record"])
            at = raw.index(SIGNATURE) + len(SIGNATURE) + 10
            raw[at] ^= 0x01
            doc["receipts"][self.tamper_index]["record"] = bytes(raw)
            body = encode(doc)
        self.send_response(answer.status_code)
        for k in ("content-type", "content-security-policy"):
            if k in answer.headers:
                self.send_header(k, answer.headers[k])
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def proxy(demo) -> Iterator[type[_Proxy]]:
    handler = type("Proxy", (_Proxy,), {"upstream": demo["urls"][0], "item": demo["bag"], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_node_that_flips_a_byte_of_one_receipt_is_caught_and_the_check_named(browser, demo, proxy):
    page = open_page(browser, f"{proxy.url}/explorer/#/item/{quote(demo['bag'], safe='')}")
    try:
        page.wait_for_selector("[data-summary]", timeout=120_000)
        steps = journey(page)
        assert page.get_attribute("[data-summary]", "data-summary") == "failed"
        failed = [s for s in steps if s["failed"]]
        assert len(failed) == 1, [s["checks"] for s in steps]
        bad = failed[0]
        assert bad["checks"] == [["header", "verified"], ["record signature", "failed"],
                                 ["Merkle path", "skipped"], ["commit certificate", "skipped"]]
        assert "record signature" in bad["text"] and "signature does not verify" in bad["text"]
        for s in steps:
            if s is not bad:
                assert {state for _, state in s["checks"]} == {"verified"}, s
    finally:
        page.close()


def test_the_page_signs_its_reads_with_a_member_key_loaded_from_a_file(browser, demo, proxy):
    """The key stays in the browser; each request carries an RFC 9421 signature by it (docs/api.md, Signed reads)."""
    page = open_page(browser, f"{proxy.url}/explorer/")
    try:
        key_file = demo["dir"] / "members" / "gayo-coop.pem"
        page.click("#settings summary")
        page.set_input_files("#key-file", str(key_file))
        page.wait_for_selector("#key-status strong", timeout=60_000)
        assert page.text_content("#key-status strong") == "gayo-coop"
        page.wait_for_selector("body[data-ready=true]", timeout=120_000)
        signed = [r for r in proxy.seen if "signature" in {k.lower() for k in r}]
        assert signed, proxy.seen
        public = Devnet(demo["dir"]).member_key("gayo-coop").public_key
        for r in signed:
            h = {k.lower(): v for k, v in r.items()}
            params = h["signature-input"].removeprefix("rantai=")
            assert f'keyid="{public.hex()}"' in params and params.endswith('alg="ed25519"')
            path, _, query = r["path"].partition("?")
            base = "\n".join(['"@method": GET', f'"@authority": {r["host"]}', f'"@path": {path}',
                              f'"@query": ?{query}', f'"@signature-params": {params}'])
            sig = base64.b64decode(h["signature"].removeprefix("rantai=:").removesuffix(":"))
            Ed25519PublicKey.from_public_bytes(public).verify(sig, base.encode())  # raises if it does not
        assert all(str(key_file) not in str(r) for r in proxy.seen)
    finally:
        page.close()


def test_a_members_only_node_gets_a_plain_explanation_then_signed_reads(browser, demo, proxy):
    """Without a key, a node that answers 401 is explained in words; with a member's key the page reads."""
    proxy.members_only, proxy.tamper_index = True, None
    page = open_page(browser, f"{proxy.url}/explorer/#/item/{quote(demo['bag'], safe='')}")
    try:
        problem = page.wait_for_selector("[data-problem=unauthorised]", timeout=60_000)
        assert "members only" in problem.text_content() and "Load your member key" in problem.text_content()
        page.set_input_files("#key-file", str(demo["dir"] / "members" / "rotterdam-import.pem"))
        page.wait_for_selector("[data-summary=verified]", timeout=120_000)
        assert len(journey(page)) == demo["traced"]
    finally:
        page.close()


def test_the_signature_reproduces_the_worked_example_of_rfc_9421s_test_key(browser, demo):
    """docs/api.md "Signed reads", worked example: RFC 9421's test-key-ed25519, created 1796202000."""
    page = open_page(browser, f"{demo['urls'][0]}/explorer/")
    try:
        headers = page.evaluate("""async () => {
            const { Api } = await import('/explorer/api.js');
            const api = new Api();
            await api.loadKey(pem);
            return api.signatureHeaders('GET', new URL(url), 1796202000);
        }""".replace("async ()", "async ([pem, url])"),
            [RFC9421_TEST_KEY, "http://127.0.0.1:8001/epcis/events?EQ_bizStep=shipping&perPage=2"])
    finally:
        page.close()
    assert headers == {
        "Signature-Input": 'rantai=("@method" "@authority" "@path" "@query");created=1796202000;'
                           'keyid="26b40b8f93fff3d897112f7ebc582b232dbd72517d082fe83cfb30ddce43d1bb";alg="ed25519"',
        "Signature": "rantai=:tFNMuQuKCnp+pVJ+Lwow0dyrtwEdJ8YOFwCVxEvxxALk2DPsykoOAT1C0V4Zqfm1J0l49XDEDeaWeqi61DMgAg"
                     "==:",
    }


def test_a_record_a_block_and_the_configuration_verify(browser, demo):
    page = open_page(browser, f"{demo['urls'][0]}/explorer/")
    try:
        record_id = demo["steps"][-1]["record_id"]  # the café's sale: valid only through the change chain
        page.fill("#q", record_id)
        page.click("#search button")
        page.wait_for_selector(f"article.step[data-record='{record_id}']", timeout=60_000)
        checks = page.eval_on_selector_all("article.step [data-check]", "(cs) => cs.map((c) => c.dataset.state)")
        assert checks == ["verified"] * 4
        sale = decode(bytes.fromhex(json.loads(Path(demo["steps"][-1]["receipt"]).read_text())["record"]))["event"]
        page.fill("#q", event_hash_id(sale))
        page.click("#search button")
        page.wait_for_selector("main h2:has-text('Event') >> xpath=.. >> [data-check='event hash ID']", timeout=60_000)
        checks = page.eval_on_selector_all("article.step [data-check]",
                                           "(cs) => cs.map((c) => [c.dataset.check, c.dataset.state])")
        assert checks == [["header", "verified"], ["record signature", "verified"], ["Merkle path", "verified"],
                          ["commit certificate", "verified"], ["event hash ID", "verified"]]
        height = demo["steps"][-1]["height"]
        page.goto(f"{demo['urls'][0]}/explorer/#/block/{height}")
        page.wait_for_selector(f"text=Block {height}", timeout=60_000)
        page.wait_for_selector("tbody tr", timeout=60_000)
        states = page.eval_on_selector_all("main [data-check]", "(cs) => cs.map((c) => c.dataset.state)")
        assert states and set(states) == {"verified"}
        page.goto(f"{demo['urls'][0]}/explorer/#/config")
        page.wait_for_selector("tr[data-member=kafe-senja]", timeout=60_000)
        assert page.get_attribute("main [data-check]", "data-state") == "verified"  # /v1/config agrees
        assert page.eval_on_selector_all("main table:nth-of-type(2) tbody tr", "(rs) => rs.length") == 4
        assert page.errors == []
    finally:
        page.close()


def test_every_node_serves_the_page_to_anyone_and_nothing_else(demo):
    for url in demo["urls"]:
        with httpx.Client(base_url=url) as http:
            assert http.get("/explorer").status_code == 308
            page = http.get("/explorer/")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert "connect-src 'self'" in page.headers["content-security-policy"]
            assert http.get("/explorer/verify.js").headers["content-type"].startswith("text/javascript")
            missing = http.get("/explorer/nothing.js")
            assert missing.status_code == 404 and missing.json()["error"] == "not found"


def test_a_receipt_file_verifies_offline_in_the_page_and_a_changed_one_does_not(browser, demo, tmp_path):
    page = open_page(browser, f"{demo['urls'][0]}/explorer/#/receipt")
    try:
        cafe = Path(demo["steps"][-1]["receipt"])  # carries the change entries that made the café a member
        page.set_input_files("#receipt-file", str(cafe))
        page.wait_for_selector("#receipt-result [data-check]", timeout=60_000)
        checks = page.eval_on_selector_all("#receipt-result [data-check]",
                                           "(cs) => cs.map((c) => [c.dataset.check, c.dataset.state])")
        assert checks == [["receipt file", "verified"], ["governance change chain", "verified"],
                          ["record, Merkle path and commit certificate", "verified"]]
        doc = json.loads(cafe.read_text(encoding="utf-8"))
        doc["index"] += 1  # another leaf: the path no longer leads to the records root
        forged = tmp_path / "forged.json"
        forged.write_text(json.dumps(doc), encoding="utf-8")
        page.set_input_files("#receipt-file", str(forged))
        page.wait_for_selector("#receipt-result [data-state=failed]", timeout=60_000)
        assert "inclusion proof" in page.text_content("#receipt-result")
    finally:
        page.close()
