"""``rantai-node doctor``: why a node is not committing, in plain words, from its status and its peers'.

A validator commits when a quorum (2f+1 of n) of the validators in force reach each other, agree on a
view, hold the chain up to the height being decided, and can write it. ``gather`` asks the node and
every validator in force for ``GET /v1/status`` (and the node for ``GET /v1/config``: the validator set
and the parameters); ``diagnose`` — pure, so tests feed it what real nodes answered — names each cause
it finds, most blocking first. The nodes are asked from where the doctor runs: a peer that answers
here may still be cut off from the node, so the node's own view of its peers is reported too.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from rantai.client.format.consortium import DEFAULT_PARAMS

__all__ = ["Finding", "Observation", "diagnose", "gather"]

DISK_LOW_BYTES = 256 * 1024 * 1024
DISK_LOW_FRACTION = 0.01
BEHIND_BLOCKS = 2  # a peer this far ahead is more than blocks in flight


@dataclass(frozen=True)
class Finding:
    cause: str  # a stable name: no-quorum, alone-in-higher-view, view-change, behind, disk-full, clock-skew, ...
    text: str
    blocking: bool = True  # False: a fact worth knowing that does not by itself stop commits


@dataclass
class Observation:
    """What the doctor saw: the node's status and config, and each validator's status (None: no answer)."""

    url: str
    status: dict[str, Any] | None
    config: dict[str, Any] | None = None
    error: str = ""
    peers: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # validator id -> status
    peer_errors: dict[str, str] = field(default_factory=dict)
    offsets_ms: dict[str, float] = field(default_factory=dict)  # node id -> its clock minus the doctor's
    urls: dict[str, str] = field(default_factory=dict)


def _get(client: httpx.Client, url: str, path: str) -> tuple[dict[str, Any] | None, str, float]:
    """(JSON answer or None, error, the node's clock minus ours at the middle of the request, in ms)."""
    t0 = time.time()
    try:
        r = client.get(url.rstrip("/") + path)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}".rstrip(": "), 0.0
    t1 = time.time()
    if r.status_code != 200:
        return None, f"HTTP {r.status_code}: {r.text[:120]}", 0.0
    body = r.json()
    offset = float(body["time_ms"]) - (t0 + t1) * 500 if isinstance(body, dict) and "time_ms" in body else 0.0
    return body, "", offset


def gather(url: str, timeout: float = 3.0, client: httpx.Client | None = None) -> Observation:
    own = client is None
    client = client or httpx.Client(timeout=timeout)
    try:
        status, error, offset = _get(client, url, "/v1/status")
        obs = Observation(url, status, error=error)
        if status is None:
            return obs
        obs.offsets_ms[status["node"]] = offset
        obs.config, _, _ = _get(client, url, "/v1/config")
        urls = {p["id"]: p["url"] for p in status.get("peers", [])}
        for v in (obs.config or {}).get("validators", []):
            urls.setdefault(v["id"], v["url"])
        urls.pop(status["node"], None)
        obs.urls = urls
        for pid in _validators(obs):
            if pid == status["node"] or pid not in urls:
                continue
            peer, err, off = _get(client, urls[pid], "/v1/status")
            obs.peers[pid] = peer
            if peer is None:
                obs.peer_errors[pid] = err
            else:
                obs.offsets_ms[pid] = off
        return obs
    finally:
        if own:
            client.close()


def _validators(obs: Observation) -> list[str]:
    """The validators in force (from the node's config), or the node and its peers when it gave none."""
    if obs.config and obs.config.get("validators"):
        return [v["id"] for v in obs.config["validators"]]
    assert obs.status is not None
    return [obs.status["node"], *(p["id"] for p in obs.status.get("peers", []))]


def _names(obs: Observation) -> dict[str, str]:
    return {v["id"]: v["name"] for v in (obs.config or {}).get("validators", [])}


def diagnose(obs: Observation) -> list[Finding]:
    """Every cause found, most blocking first; a single ``committing`` or ``idle`` finding when none is."""
    if obs.status is None:
        return [Finding("unreachable", f"the node does not answer at {obs.url} ({obs.error}): is it running, and "
                                       f"is this its API address?")]
    me = obs.status
    names = _names(obs)

    def name(pid: str) -> str:
        return f"{names[pid]} ({pid})" if pid in names else pid

    out: list[Finding] = []
    if me.get("fatal"):
        out.append(Finding("fatal", f"this validator stopped on a broken invariant ({me['fatal']}): it no longer "
                                    f"votes; its log has the traceback; restart it (a bug: please report it)"))
    if me.get("mode") in ("retired", "observing", "observer"):
        what = "was removed by governance" if me["mode"] == "retired" else "is not (yet) a validator in force"
        out.append(Finding("not-a-validator", f"this node {what}: it follows the chain but never votes"))
    disk = me.get("disk") or {}
    free, total = disk.get("free_bytes"), disk.get("total_bytes")
    if free is not None and total and (free < DISK_LOW_BYTES or free < DISK_LOW_FRACTION * total):
        out.append(Finding("disk-full", f"disk full: {free / 2**20:.0f} MiB free of {total / 2**30:.1f} GiB on the "
                                        f"data directory's filesystem; a validator that cannot write its votes "
                                        f"and blocks cannot commit: free space or grow the volume"))
    if me.get("storage_errors"):
        out.append(Finding("storage-errors", f"{me['storage_errors']} disk writes failed since start (log event "
                                             f"storage-error says which and why)"))
    validators = _validators(obs)
    n = len(validators)
    f = (n - 1) // 3
    quorum = n - f
    answering = [me["node"]] + [pid for pid, s in obs.peers.items() if s is not None]
    silent = [pid for pid in validators if pid != me["node"] and obs.peers.get(pid) is None]
    seen_by_node = {p["id"]: p for p in me.get("peers", [])}
    if len(answering) < quorum:
        why = "; ".join(f"{name(pid)} at {obs.urls.get(pid, '?')}: {obs.peer_errors.get(pid, 'not asked')}"
                        for pid in silent)
        out.append(Finding("no-quorum", f"no quorum reachable: {len(answering)} of {n} validators answer and "
                                        f"{quorum} are needed to commit (at most {f} may be down); not answering: "
                                        f"{why}. Bring them back (or, if they are gone for good, change the "
                                        f"validator set by governance once a quorum is back)"))
    else:
        cut = [pid for pid in validators if pid in seen_by_node and obs.peers.get(pid) is not None
               and not seen_by_node[pid].get("reachable")]
        if cut and len(answering) - len(cut) < quorum:
            out.append(Finding("no-quorum", f"no quorum reachable from this node: {', '.join(map(name, cut))} "
                                            f"answer the doctor but this node's streams to them fail: check "
                                            f"the network (firewall, TLS, DNS) between them"))
    out += _view_findings(obs, f, name)
    out += _height_findings(obs, name)
    out += _clock_findings(obs, name)
    if not any(x.blocking for x in out):
        height = me["height"]
        if me.get("mempool", 0) or me.get("in_flight", 0):
            out.append(Finding("committing", f"no cause found: height {height}, view {me['view']}, "
                                             f"{me.get('mempool', 0)} records waiting; run it again to see the "
                                             f"height move", blocking=False))
        else:
            out.append(Finding("idle", f"no cause found: height {height}, view {me['view']} (primary "
                                       f"{name(me['primary'])}), no records waiting: nothing to commit",
                               blocking=False))
    return out


def _view_findings(obs: Observation, f: int, name: Any) -> list[Finding]:
    me = obs.status
    assert me is not None
    others = {pid: s for pid, s in obs.peers.items() if s is not None}
    below = sorted((s["view"] for s in others.values() if s["view"] < me["view"]), reverse=True)
    working_below = [s for s in others.values() if s["view"] < me["view"] and s["mode"] == "normal"]
    if me["mode"] == "view-change" and len(working_below) >= f + 1:
        w = below[f] if len(below) > f else below[-1]
        peers = ", ".join(name(p["id"]) + (" up" if p.get("reachable") else " DOWN") for p in me.get("peers", []))
        return [Finding("alone-in-higher-view",
                        f"alone in a higher view: this node is changing to view {me['view']} while "
                        f"{len(working_below)} validators work in view {w} "
                        f"(primary {name(working_below[0]['primary'])}): no quorum will join view {me['view']}. "
                        f"View synchronisation brings it back as soon as it "
                        f"hears f+1 of them working in their view; while it stays here, their messages do not reach "
                        f"it: check that they reach this node's URL (this node sees its peers as: {peers})")]
    if me["mode"] == "view-change":
        changing = [pid for pid, s in others.items() if s["mode"] == "view-change"]
        primary = me.get("primary", "?")
        return [Finding("view-change", f"stuck in a view change to view {me['view']}: {len(changing) + 1} "
                                       f"validators are changing view and wait for the NEW-VIEW of its primary "
                                       f"{name(primary)}"
                                       + ("" if primary in others or primary == me["node"] else
                                          " (which does not answer: the next view change, after the timeout, "
                                          "moves on to the next primary)"))]
    return []


def _height_findings(obs: Observation, name: Any) -> list[Finding]:
    me = obs.status
    assert me is not None
    heights = {pid: s["height"] for pid, s in obs.peers.items() if s is not None}
    c = me.get("catch_up") or {}
    if not heights:
        return []
    top = max(heights.values())
    ahead = [pid for pid, h in heights.items() if h == top]
    lag = top - me["height"]
    if c.get("running"):
        return [Finding("behind", f"behind and catching up: this node is at height {me['height']}, "
                                  f"{name(ahead[0])} at {top} ({lag} blocks behind); catch-up from "
                                  f"{c.get('from')} to {c.get('target')} at {c.get('records_per_s', 0):.0f} "
                                  f"records/s; it commits again once it holds the chain up to the others")]
    if lag >= BEHIND_BLOCKS:
        return [Finding("behind", f"behind: this node is at height {me['height']}, {name(ahead[0])} at {top} "
                                  f"({lag} blocks behind) and no catch-up is running; it starts one when it "
                                  f"sees a stable checkpoint above its height (every checkpoint_interval "
                                  f"blocks, from the others' votes: they must reach this node)")]
    return []


def _clock_findings(obs: Observation, name: Any) -> list[Finding]:
    me = obs.status
    assert me is not None
    params = (obs.config or {}).get("params", {})
    limit = int(params.get("max_clock_skew_ms", DEFAULT_PARAMS["max_clock_skew_ms"]))
    offsets = obs.offsets_ms
    mine = offsets.get(me["node"])
    peers = [off for pid, off in offsets.items() if pid != me["node"]]
    if mine is None or not peers:
        return []
    skew = mine - statistics.median(peers)
    if abs(skew) <= limit / 2:
        return []
    direction = "ahead of" if skew > 0 else "behind"
    blocking = abs(skew) > limit
    return [Finding("clock-skew", f"clock skew: this node's clock is {abs(skew) / 1000:.1f} s {direction} the "
                                  f"other validators' (median); blocks more than max_clock_skew_ms = {limit} ms "
                                  f"ahead of a validator's clock are refused, so a primary whose clock runs "
                                  f"ahead has its proposals refused and a validator whose clock is behind refuses "
                                  f"them: run NTP (chrony, systemd-timesyncd) on every host", blocking=blocking)]
