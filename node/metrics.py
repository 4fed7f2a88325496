"""``GET /metrics``: a node's state and history in Prometheus' format, through prometheus-client.

Each app has its own ``CollectorRegistry`` (tests run several nodes in one process, and the default
registry is global). What is a state — height, view, mempool, peers, catch-up — is read from the node
when a scraper asks (a custom collector), so it is never stale and costs nothing between scrapes; what
is a distribution — synced disk writes, request latencies — is observed as it happens, into histograms.
Every series is listed in docs/operations.md ("Metrics").
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from .driver import Node

__all__ = ["CONTENT_TYPE_LATEST", "NodeMetrics", "version"]

# Synced writes take a millisecond on a good SSD and hundreds on a struggling disk; requests that wait
# for a commit take up to the client's timeout.
DISK_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, float("inf"))
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   float("inf"))
# The driver's synced writes: consensus state, and a run of consecutive blocks with their indexes (two batches).
DISK_KINDS = {"persist": "votes", "apply_run": "block"}


def version() -> str:
    """The installed rantai's version (what ``rantai-node --version`` prints)."""
    try:
        return metadata.version("rantai")
    except metadata.PackageNotFoundError:
        return "unknown"


def _label(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", text)


class NodeMetrics:
    """The metrics of one node's app: its registry, its histograms, and the collector of its state."""

    def __init__(self, node: Node, admission_counters: Mapping[str, int]) -> None:
        self.node = node
        self.admission_counters = admission_counters
        self.started = time.time()
        self.registry = CollectorRegistry(auto_describe=True)
        self.disk = Histogram("rantai_disk_sync_seconds", "Synced LevelDB writes: a batch of consensus votes "
                              "(kind=votes), committed blocks with their indexes (kind=block: a run of consecutive "
                              "blocks, with the round's votes one synced batch, from catch-up two), or the block "
                              "database synced before a CHECKPOINT (kind=other).", ["kind"],
                              buckets=DISK_BUCKETS, registry=self.registry)
        self.requests = Histogram("rantai_http_request_seconds", "HTTP requests served, by method and route "
                                  "(peer streams excluded: they last as long as the connection).",
                                  ["method", "route"], buckets=REQUEST_BUCKETS, registry=self.registry)
        self.commits = Counter("rantai_commits", "Blocks this node stored since it started (committed by "
                               "consensus or fetched by catch-up).", registry=self.registry)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU, open fds, start time
        self.registry.register(_StateCollector(self))
        self.peer_heights: dict[str, int | None] = {}
        self._hooked: Any = None

    def hook_storage(self) -> None:
        """Count commits from the store's after-commit hook (once per opened store)."""
        storage = self.node.storage
        if self._hooked is storage:
            return
        self._hooked = storage
        storage.on_commit.append(self._on_commit)

    def _on_commit(self, height: int, info: Any) -> None:
        self.commits.inc()

    def timed_disk(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` (a driver's disk write) timed into ``rantai_disk_sync_seconds``; storage errors logged once each."""
        kind = DISK_KINDS.get(getattr(fn, "__name__", ""), "other")
        hist = self.disk.labels(kind)
        node = self.node

        def run(*args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args)
            except Exception as exc:
                watch = getattr(node, "watch", None)
                if watch is not None and _is_storage_error(exc):
                    watch.storage_error(f"writing a {kind} batch", exc)
                raise
            finally:
                hist.observe(time.perf_counter() - t0)

        return run

    def observe_request(self, method: str, route: str, seconds: float) -> None:
        self.requests.labels(method, route).observe(seconds)

    def extra_status(self) -> dict[str, Any]:
        """What ``GET /v1/status`` adds for operators and ``rantai-node doctor``: version, uptime, wall clock,
        disk space, view changes and their last reason, records admitted and refused by rule, storage errors."""
        node = self.node
        watch = getattr(node, "watch", None)
        out: dict[str, Any] = {"version": version(), "uptime_s": round(time.time() - self.started, 1),
                               "time_ms": int(time.time() * 1000), "disk": disk_space(node.data_dir)}
        if watch is not None:
            out.update(view_changes=watch.view_changes, last_view_change=watch.last_reason,
                       records={"admitted": watch.admitted, "refused": dict(watch.refused)},
                       storage_errors=watch.storage_errors)
        return out

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def disk_space(path: Any) -> dict[str, int] | None:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return {"free_bytes": usage.free, "total_bytes": usage.total}


def _is_storage_error(exc: BaseException) -> bool:
    from .storage import StorageError

    return isinstance(exc, (OSError, StorageError)) or type(exc).__module__.startswith("plyvel")


class _StateCollector:
    """The node's state, read when scraped (gauges), and its event counters (``_total``)."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.m = metrics

    def describe(self) -> list[Metric]:
        return []  # the series depend on the node's state: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        m, node = self.m, self.m.node
        yield _info("rantai_build", "The software and the chain this node runs.",
                    {"version": version(), "chain_id": node.genesis.chain_id, "node": node.id, "name": node.name})
        yield _gauge("rantai_start_time_seconds", "When this node's app was created (Unix time).", m.started)
        yield _gauge("rantai_uptime_seconds", "Seconds since this node's app was created.", time.time() - m.started)
        if not node.started:
            yield _gauge("rantai_up", "1 while the node runs (its store open, its loop going).", 0)
            return
        yield _gauge("rantai_up", "1 while the node runs (its store open, its loop going).", 1)
        status = node.status()
        height = status["height"]
        yield _gauge("rantai_height", "Height of the last stored block.", height)
        yield _gauge("rantai_view", "The consensus view this validator is in.", status["view"])
        yield _gauge("rantai_view_change", "1 while this validator is not in normal mode.",
                     int(status["mode"] != "normal"))
        yield _gauge("rantai_mempool_records", "Records admitted and not yet committed.", status["mempool"])
        yield _gauge("rantai_in_flight_records", "Records in proposals not yet committed.", status["in_flight"])
        c = status["catch_up"]
        yield _gauge("rantai_catch_up_running", "1 while catching up from peers.", int(bool(c.get("running"))))
        yield _gauge("rantai_catch_up_target", "The height the current or last catch-up aims at.", c.get("target", 0))
        yield _gauge("rantai_catch_up_height", "The height the current or last catch-up reached.", c.get("height", 0))
        yield _gauge("rantai_catch_up_from", "The height the current or last catch-up started from.", c.get("from", 0))
        yield _gauge("rantai_catch_up_remaining_blocks", "Blocks the current catch-up still has to fetch (0 when "
                     "none runs).", max(0, c.get("target", 0) - height) if c.get("running") else 0)
        yield _gauge("rantai_catch_up_records_per_second", "The current or last catch-up's speed.",
                     c.get("records_per_s", 0.0))
        yield _gauge("rantai_fatal", "1 once an invariant broke (the validator stopped).",
                     int(status.get("fatal") is not None))
        peers = status["peers"]
        yield _gauge("rantai_peers", "Validators this node talks to.", len(peers))
        names = {v.id: v.name for cfg in node.ledger.governance.configs for v in cfg.validators}
        up = GaugeMetricFamily("rantai_peer_up", "1 when the last exchange with the peer worked (its streams or "
                               "its answer to this scrape's head request).", labels=["peer", "name"])
        lag = GaugeMetricFamily("rantai_peer_lag_blocks", "The peer's height minus this node's (negative: the "
                                "peer is behind), asked at this scrape; absent when it did not answer.",
                                labels=["peer", "name"])
        peer_height = GaugeMetricFamily("rantai_peer_height", "The peer's head height, asked at this scrape.",
                                        labels=["peer", "name"])
        queued = GaugeMetricFamily("rantai_peer_queued_messages", "Messages queued for the peer.",
                                   labels=["peer", "name"])
        for p in peers:
            labels = [p["id"], names.get(p["id"], "")]
            h = m.peer_heights.get(p["id"])
            up.add_metric(labels, int(bool(p["reachable"]) or h is not None))
            queued.add_metric(labels, p["queued"])
            if h is not None:
                peer_height.add_metric(labels, h)
                lag.add_metric(labels, h - height)
        yield from (up, peer_height, lag, queued)
        watch = getattr(node, "watch", None)
        if watch is not None:
            yield _counter("rantai_view_changes", "View changes this node began or joined since it started.",
                           watch.view_changes)
            yield _counter("rantai_records_admitted", "Records admitted to the mempool since start.", watch.admitted)
            refused = CounterMetricFamily("rantai_records_refused", "Records refused since start, by the rule "
                                          "that refused them (docs/api.md lists the rules).", labels=["rule"])
            for rule, n in sorted(watch.refused.items()):
                refused.add_metric([rule], n)
            yield refused
            yield _counter("rantai_storage_errors", "Disk writes that failed (also logged, event storage-error).",
                           watch.storage_errors)
        for section in getattr(node, "status_extra", {}):  # e.g. "tls" (node/tls.py): refusals by rule
            yield from _section(section, status.get(section))
        space = disk_space(node.data_dir)
        if space is not None:
            yield _gauge("rantai_disk_free_bytes", "Free bytes on the data directory's filesystem.",
                         space["free_bytes"])
        events = CounterMetricFamily("rantai_events", "Events this node counted, by name (docs/operations.md).",
                                     labels=["event"])
        for name, value in sorted(status["counters"].items()):
            events.add_metric([_label(name)], value)
        yield events
        refusals = CounterMetricFamily("rantai_admission_refusals", "Requests or records refused by admission "
                                       "control, by limit.", labels=["limit"])
        for name, value in sorted(m.admission_counters.items()):
            refusals.add_metric([_label(name)], value)
        yield refusals


def _section(name: str, value: Any) -> Iterator[Metric]:
    """A status section's refusals by rule (``rantai_<section>_refusals_total{rule}``), and for TLS the days
    left on this node's certificate."""
    if not isinstance(value, dict):
        return
    refused = value.get("refused")
    if isinstance(refused, dict):
        family = CounterMetricFamily(f"rantai_{_label(name)}_refusals", f"Connections or requests refused by the "
                                     f"{name} checks, by rule (docs/operations.md).", labels=["rule"])
        for rule, n in sorted(refused.items()):
            if isinstance(n, int):
                family.add_metric([rule], n)
        yield family
    if name != "tls" or not value.get("enabled"):
        return
    days = (value.get("certificate") or {}).get("days_left")
    if isinstance(days, (int, float)):
        yield _gauge("rantai_tls_certificate_days_left", "Days until this node's TLS certificate expires (replace "
                     "it before: docs/operations.md).", days)
    if isinstance(value.get("reloads"), int):
        yield _gauge("rantai_tls_reloads", "Certificate reloads since start (SIGHUP or the files changing).",
                     value["reloads"])


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)


def _info(name: str, help_text: str, labels: dict[str, str]) -> InfoMetricFamily:
    return InfoMetricFamily(name, help_text, value=labels)
