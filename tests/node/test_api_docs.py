"""``/docs`` works without internet and ``/openapi.json`` documents bodies, parameters and answers (issue 13, item 4).

The Chromium test opens a real node's ``/docs`` with every host but 127.0.0.1 unresolvable and any other
request sent to a closed proxy: Swagger UI renders the operations only if each of its files comes from
the node. It skips only where no Chromium is installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess

import httpx
import pytest
from openapi_spec_validator import validate
from ports import free_base_port

from rantai.client.devnet import Devnet
from rantai.node.api_docs import OPERATIONS
from rantai.node.app import create_app
from rantai.node.driver import Node

from .conftest import make_net


@pytest.fixture
def app(tmp_path):
    return create_app(Node(genesis=make_net().genesis, signer=make_net().validators[0], data_dir=tmp_path / "v0"),
                      manage_lifecycle=False)


def test_openapi_is_valid_and_documents_bodies_parameters_and_answers(app):
    doc = app.api.openapi()
    validate(doc)  # OpenAPI 3.1, as a client generator reads it
    paths = doc["paths"]
    for (method, path), extra in OPERATIONS.items():
        op = paths[path][method]  # every description names a route that exists
        assert ("requestBody" in extra) == ("requestBody" in op), (method, path)
        for p in extra.get("parameters", []):
            assert any(q["name"] == p["name"] for q in op["parameters"]), (method, path, p["name"])
    records = paths["/v1/records"]["post"]
    body = records["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/RecordsBody"}
    assert body["application/msgpack"]["schema"]["format"] == "binary"
    assert {"wait", "timeout_ms"} <= {p["name"] for p in records["parameters"]}
    assert {"200", "202", "400", "401", "409", "413", "429"} <= set(records["responses"])
    assert {p["name"] for p in paths["/v1/blocks"]["get"]["parameters"]} == {"from", "to"}
    for path, ops in paths.items():
        for method, op in ops.items():
            assert "422" not in op["responses"], (method, path)  # the node answers 400, never 422
            if method == "post":
                assert "requestBody" in op, (method, path)
            for answer in op["responses"].values():
                for media in answer.get("content", {}).values():
                    assert media["schema"], (method, path)


def test_docs_page_and_assets_are_served_by_the_node(app):
    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as c:
            page = await c.get("/docs")
            assert page.status_code == 200
            urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
            assert urls and all(u.startswith("/docs/assets/") for u in urls), urls
            assert "http://" not in page.text and "https://" not in page.text  # no CDN, no font service
            for u in urls:
                r = await c.get(u)
                assert r.status_code == 200 and len(r.content) > 1000, u

    asyncio.run(main())


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-headless-shell") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_docs_render_in_headless_chromium_without_network(tmp_path):
    net = Devnet(tmp_path / "devnet", validators=4, base_port=free_base_port(4))
    try:
        net.start(indices=[0])  # /docs needs no quorum
        net.wait_ready(timeout=60, indices=[0])
        url = net.urls[0].replace("localhost", "127.0.0.1") + "/docs"
        done = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}",
             # no network but the node: every other name unresolvable, every other request to a closed proxy
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
             "--virtual-time-budget=20000", "--dump-dom", url],
            capture_output=True, text=True, timeout=180)
        dom = done.stdout
        assert done.returncode == 0, done.stderr[-2000:]
        paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
        assert {"/v1/records", "/v1/status", "/v1/blocks/{height}"} <= paths, dom[-3000:]
        assert "Failed to load API definition" not in dom and "Unable to render" not in dom
    finally:
        net.stop()
