"""The node's log: text or one JSON object per line, and the events an operator needs, each as one line.

An operator reading a validator's log (or a log shipper parsing it) wants the few things that change
what the node does — it started (and with what configuration), it changed view and why, it fell behind
and caught up, a peer went away and came back, records were refused (by which rule), the disk failed —
not one line per request. ``Watch`` notices these from the driver's loop and logs each once, with the
fields a machine needs (``event``, ``reason`` …) beside the sentence a person reads.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import NodeConfig
    from .driver import Node

__all__ = ["LEVELS", "FORMATS", "JsonFormatter", "Watch", "configure", "event", "start_event"]

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
REFUSED_LOG_S = 10.0  # refused records: at most one line per rule this often (a flood must not fill the disk)
PEER_CHECK_S = 1.0  # how often the peers' reachability is looked at

log = logging.getLogger("rantai.node.events")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ms), ``level``, ``node``, ``logger``, ``msg``, then the event's fields."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        ts = dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds")
        out: dict[str, Any] = {"ts": ts.replace("+00:00", "Z"), "level": record.levelname.lower(),
                               "node": self.node, "logger": record.name, "msg": record.getMessage()}
        name = getattr(record, "event", None)
        if name is not None:
            out["event"] = name
            out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def configure(level: str = "info", fmt: str = "text", node: str = "") -> None:
    """The process's logging: every line to stderr (systemd's journal and Docker collect it from there)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(node))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {node} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())


def event(kind: str, message: str, /, *args: Any, level: int = logging.INFO, **fields: Any) -> None:
    """Log one operator event: ``message % args`` for people, ``event=kind`` and ``fields`` for machines."""
    log.log(level, message, *args, extra={"event": kind, "fields": fields})


def start_event(cfg: NodeConfig, node: Node, level: str, fmt: str) -> None:
    """The first line of a run: what this node is and the configuration it runs with (no secrets: the
    key's path, never the key)."""
    from .metrics import version

    g = node.genesis
    summary: dict[str, Any] = {"version": version(), "id": node.id, "name": node.name, "chain_id": g.chain_id,
               "genesis_hash": g.hash.hex(), "validators": len(g.validators), "listen": f"{cfg.host}:{cfg.port}",
               "data_dir": str(cfg.data_dir), "key": str(cfg.key_path), "peer_overrides": len(cfg.peers),
               "tick_ms": cfg.tick_ms, "verify_workers": cfg.verify_workers, "log_level": level, "log_format": fmt}
    event("start", "rantai %s starting: validator %s (%s) of %s, listening on %s:%d, data in %s, %d validators "
          "in the genesis", summary["version"], node.name, node.id, g.chain_id, cfg.host, cfg.port, cfg.data_dir,
          len(g.validators), **summary)


class Watch:
    """Notices a node's state changes from its loop and logs each once (and counts them, for /metrics).

    The replica (consensus/) is sans-I/O and says nothing about why it moved; the reason of a view
    change is read from what moved it: the timer (a tick) or messages, and its view-sync counters.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        r = node.replica
        self.view, self.mode = r.view, r.mode
        self.view_changes = 0  # view changes this node began or joined since it started
        self.last_reason = ""
        self.admitted = 0
        self.refused: dict[str, int] = {}  # rule -> records refused since start
        self.storage_errors = 0
        self._sync = self._sync_counters()
        self._peers: dict[str, bool] = {}
        self._peers_at = 0.0
        self._refused_window: dict[str, tuple[float, int]] = {}  # rule -> (last line's time, refusals since)
        self.catch_up_running = False

    def _sync_counters(self) -> tuple[int, int]:
        c = self.node.replica.status().get("dropped", {})
        return c.get("view-sync-up", 0), c.get("view-sync-down", 0)

    # -- called from the driver's loop ---------------------------------------------------------
    def after(self, cause: str) -> None:
        """After the replica handled ``cause`` ("tick" or "messages"): a view or mode change is logged."""
        r = self.node.replica
        view, mode = r.view, r.mode
        if view != self.view or mode != self.mode:
            self._view_moved(cause, self.view, self.mode, view, mode)
            self.view, self.mode = view, mode
        now = time.monotonic()
        if now - self._peers_at >= PEER_CHECK_S:
            self._peers_at = now
            self._check_peers()

    def _view_moved(self, cause: str, old_view: int, old_mode: str, view: int, mode: str) -> None:
        up, down = self._sync_counters()
        synced_up = up > self._sync[0]
        self._sync = (up, down)
        primary = self.node.replica.primary(view)
        old_primary = self.node.replica.primary(old_view)
        if mode == "view-change" and view > old_view:
            if synced_up:
                reason = f"view sync: f+1 validators are working in view {view} or above"
            elif cause == "tick" and old_mode == "normal":
                reason = (f"timeout: no commit from primary {old_primary} in view {old_view} within the "
                          f"view-change timeout while records or proposals were pending")
            elif cause == "tick":
                reason = f"timeout: the view change to {old_view} did not complete (no NEW-VIEW from {old_primary})"
            else:
                reason = f"joined: f+1 validators asked for view {view} or above"
            self.view_changes += 1
            self.last_reason = reason
            event("view-change", "view change %d -> %d (%s): %s", old_view, view, primary, reason,
                  level=logging.WARNING, view=view, previous_view=old_view, primary=primary, reason=reason)
        elif mode == "normal" and view < old_view:
            reason = f"view sync: alone in view {old_view}; f+1 validators work in view {view}"
            self.last_reason = reason
            event("view-rejoin", "back to view %d (%s) from a lone view change to %d: %s", view, primary, old_view,
                  reason, level=logging.WARNING, view=view, previous_view=old_view, primary=primary, reason=reason)
        elif mode == "normal":
            event("view-start", "view %d started, primary %s", view, primary, view=view, primary=primary,
                  reason="a quorum of validators agreed on the new view (NEW-VIEW)")
        else:
            event("view-mode", "view %d: mode %s -> %s", view, old_mode, mode, view=view, mode=mode,
                  previous_mode=old_mode)

    def _check_peers(self) -> None:
        names = self._names()
        for p in self.node.transport.status():
            pid, up = p["id"], bool(p["reachable"])
            before = self._peers.get(pid)
            self._peers[pid] = up
            if before is None or before == up:
                continue
            name = names.get(pid, pid)
            if up:
                event("peer-regained", "peer %s (%s) reachable again", name, p["url"], peer=pid, name=name,
                      url=p["url"])
            else:
                event("peer-lost", "peer %s (%s) unreachable: %s", name, p["url"], self._last_error(pid),
                      level=logging.WARNING, peer=pid, name=name, url=p["url"], error=self._last_error(pid))

    def _names(self) -> dict[str, str]:
        return {v.id: v.name for c in self.node.ledger.governance.configs for v in c.validators}

    def _last_error(self, pid: str) -> str:
        errors = [lanes[pid].last_error for lanes in self.node.transport.lanes.values() if pid in lanes]
        return next((e for e in errors if e), "no answer")

    # -- catch-up ------------------------------------------------------------------------------
    def catch_up_started(self, target: int, peers: Any) -> None:
        self.catch_up_running = True
        height = self.node.storage.height
        event("catch-up-start", "catch-up from height %d to %d: a quorum committed blocks this node does not have",
              height, target, height=height, target=target, peers=list(peers),
              reason="a stable checkpoint above this node's height")

    def catch_up_ended(self, task: Any) -> None:
        self.catch_up_running = False
        s = self.node.catching_up.state
        failed = None if task.cancelled() or task.exception() is None else repr(task.exception())
        event("catch-up-end", "catch-up ended at height %d (target %d): %d blocks, %d records, %.0f records/s%s",
              self.node.storage.height, s.get("target", 0), s.get("blocks", 0), s.get("records", 0),
              s.get("records_per_s", 0.0), f"; failed: {failed}" if failed else "",
              height=self.node.storage.height, target=s.get("target", 0), blocks=s.get("blocks", 0),
              records=s.get("records", 0), reached=self.node.storage.height >= s.get("target", 0), error=failed)

    # -- records ---------------------------------------------------------------------------------
    def records(self, results: Any) -> None:
        """The node's verdict on submitted records: counted, and refusals logged (one line per rule per window)."""
        from rantai.client.format.errors import DuplicateRecord
        from rantai.client.format.records import SignedRecord

        for _rid, res in results:
            if isinstance(res, SignedRecord):
                self.admitted += 1
            elif not isinstance(res, DuplicateRecord):  # gossip makes duplicates all day: not a refusal
                rule = getattr(res, "rule", None) or type(res).__name__
                self.refused[rule] = self.refused.get(rule, 0) + 1
                self._refused_line(rule, str(res))

    def _refused_line(self, rule: str, detail: str) -> None:
        """The first refusal by ``rule`` at once; the next ones in a window summed into the next line."""
        now = time.monotonic()
        start, more = self._refused_window.get(rule, (-REFUSED_LOG_S, 0))
        if now - start < REFUSED_LOG_S:
            self._refused_window[rule] = (start, more + 1)
            return
        self._refused_window[rule] = (now, 0)
        also = f" (and {more} more by this rule in the {now - start:.0f} s before)" if more else ""
        event("records-refused", "refused a record by rule %r: %s%s", rule, detail, also, level=logging.WARNING,
              rule=rule, detail=detail, suppressed=more)

    # -- storage ---------------------------------------------------------------------------------
    def storage_error(self, what: str, exc: BaseException) -> None:
        self.storage_errors += 1
        event("storage-error", "storage error while %s: %s (data_dir %s)", what, exc, self.node.data_dir,
              level=logging.ERROR, what=what, error=f"{type(exc).__name__}: {exc}", data_dir=str(self.node.data_dir))
