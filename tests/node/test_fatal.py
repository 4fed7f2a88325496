"""A broken invariant stops the validator loudly: it is not logged and swallowed like a peer's bad
input. Goal: the node stops taking part (its driver loop ends), says so in /healthz (503) and
/v1/status, and tells its runner (``on_fatal``: ``rantai-node run`` exits 70)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rantai.consensus.errors import InvariantBroken
from rantai.node.app import create_app
from rantai.node.driver import Node

from .conftest import make_net

pytestmark = pytest.mark.timeout(60)


def test_invariant_broken_stops_the_validator(tmp_path):
    net = make_net()

    async def main():
        node = Node(genesis=net.genesis, signer=net.validators[1], data_dir=tmp_path / "v1")
        app = create_app(node, manage_lifecycle=False)
        told: list[BaseException] = []
        node.on_fatal = told.append

        async def broken() -> None:
            raise InvariantBroken("committed height went backwards")

        await node.start()
        node._maybe_propose = broken  # the next driver step breaks an invariant
        node._wake.set()
        try:
            for _ in range(200):
                if node.fatal is not None:
                    break
                await asyncio.sleep(0.01)
            assert isinstance(node.fatal, InvariantBroken) and told == [node.fatal]
            assert node._tasks[0].done()  # the driver loop ended: no more votes from this validator
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as c:
                r = await c.get("/healthz")
                assert r.status_code == 503 and r.json()["error"] == "invariant broken"
                status = (await c.get("/v1/status")).json()
                assert "committed height went backwards" in status["fatal"]
        finally:
            await node.stop()

    asyncio.run(main())


def test_metrics_are_prometheus_text_with_every_counter(tmp_path):
    """GET /metrics: Prometheus' text format, the node's gauges and each counter, parseable line by line."""
    net = make_net()

    async def main():
        node = Node(genesis=net.genesis, signer=net.validators[1], data_dir=tmp_path / "v1")
        app = create_app(node, manage_lifecycle=False)
        await node.start()
        try:
            node._count("records-shared-with-all")
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as c:
                r = await c.get("/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            samples = {}
            for line in r.text.splitlines():
                if not line.startswith("#"):
                    name, value = line.rsplit(" ", 1)
                    samples[name] = float(value)
            assert samples["rantai_height"] == 0 and samples["rantai_fatal"] == 0
            assert samples['rantai_events_total{event="records_shared_with_all"}'] == 1
        finally:
            await node.stop()

    asyncio.run(main())


def test_version():
    from click.testing import CliRunner

    from rantai.node.cli import cli

    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("rantai-node, version ")
