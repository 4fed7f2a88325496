"""Backup, restore and reset of a node's store (``rantai-node backup | restore | reset``; docs/operations.md).

A consistent copy of a running node cannot be made by copying its files (LevelDB rewrites them as it
compacts) nor by opening them from another process (LevelDB locks them). So the running node writes
the backup itself, from LevelDB snapshots, while it goes on committing: first a snapshot of the index
database, which fixes the head H (a block's index entries and the head are one batch, so the snapshot
holds every index entry up to H and none above), then a snapshot of the block database, which holds
every block up to H (a block is synced before its index batch) and maybe a few above, which are left
out. The result is a data directory at height H, its indexes complete, that opens and checks like any
other (node/storecheck.py) and that ``rantai-node audit`` re-verifies.

The consensus state (``b"s"`` keys: this validator's votes and view) is left out on purpose: it is a
validator's memory of what it signed after H, and a restored node must not be handed an older one as
if it were current. A restored node starts from H with no votes of its own and learns the view from
its peers, as a node that lost its disk does (docs/operations.md, "Backup and restore").
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plyvel
from fastapi import APIRouter, Request
from starlette.responses import Response

from rantai.client.format.errors import RantaiError

from .answers import ApiError, client_address, load_json, read_body, respond
from .storage import CHAIN_DIR, FORMAT, HEAD, META, STATE, Storage, StorageError

if TYPE_CHECKING:
    from .driver import Node

__all__ = ["MANIFEST", "BackupError", "backup_router", "backup_store", "reset_store", "restore_store", "store_in_use"]

MANIFEST = "rantai-backup.json"
_BATCH = 4 * 1024 * 1024  # bytes per write batch of the copy


class BackupError(RantaiError):
    """A backup, restore or reset that cannot be done; the message says why."""

    status_hint = 409
    rule = "backup"


def _empty_target(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"backup: {dest} exists and is not an empty directory; choose a new one")


def _copy(items: Any, db: Any) -> tuple[int, int]:
    """Write ``(key, value)`` pairs into ``db`` in bounded batches; (pairs, bytes)."""
    count = size = pending = 0
    wb = db.write_batch()
    for key, value in items:
        wb.put(key, value)
        count += 1
        pending += len(key) + len(value)
        if pending >= _BATCH:
            wb.write()
            size += pending
            wb, pending = db.write_batch(), 0
    wb.write()
    return count, size + pending


def backup_store(storage: Storage, dest: str | os.PathLike[str], *, node: str = "") -> dict[str, Any]:
    """Write a consistent copy of ``storage`` (open, possibly in use) into the new directory ``dest``.

    Returns the manifest (also written as ``dest/rantai-backup.json``).
    """
    dest = Path(dest)
    _empty_target(dest)
    t0 = time.monotonic()
    index_snap = storage.db.snapshot()  # first: it fixes the head
    chain_snap = storage.chain_db.snapshot()
    try:
        raw = index_snap.get(HEAD)
        height = 0 if raw is None else int.from_bytes(raw[:8], "big")
        head_hash = storage.chain if raw is None else raw[8:]
        fmt = index_snap.get(META + b"format")
        if fmt != FORMAT:
            raise BackupError(f"backup: the store has format {fmt!r}; a node of this version migrates it to "
                              f"{FORMAT!r} when it opens it")
        dest.mkdir(parents=True, exist_ok=True)
        tmp = dest / ".incomplete"
        tmp.write_text("a backup was being written here and did not finish: delete this directory\n")
        index = plyvel.DB(str(dest), create_if_missing=True, error_if_exists=False)
        try:
            keys, size = _copy(((k, v) for k, v in index_snap.iterator() if not k.startswith(STATE)), index)
        finally:
            index.close()
        chain = plyvel.DB(str(dest / CHAIN_DIR), create_if_missing=True)
        try:
            stop = (height + 1).to_bytes(8, "big")
            blocks, chain_size = _copy(chain_snap.iterator(stop=stop), chain)
        finally:
            chain.close()
    finally:
        index_snap.close()
        chain_snap.close()
    manifest = {"format": FORMAT.decode(), "chain": storage.chain.hex(), "height": height,
                "head_hash": head_hash.hex(), "node": node, "created_at": int(time.time() * 1000),
                "index_keys": keys, "chain_keys": blocks, "bytes": size + chain_size,
                "seconds": round(time.monotonic() - t0, 3)}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.unlink()
    return manifest


def read_manifest(src: Path) -> dict[str, Any]:
    if (src / ".incomplete").exists():
        raise BackupError(f"restore: {src} holds a backup that did not finish")
    try:
        return dict(json.loads((src / MANIFEST).read_text()))
    except (OSError, ValueError) as exc:
        raise BackupError(f"restore: {src} is not a rantai backup (no readable {MANIFEST}: {exc})") from None


def store_in_use(data_dir: Path) -> bool:
    """True when a process (a running node) holds the store's LevelDB lock."""
    if not (data_dir / "CURRENT").is_file():
        return False
    try:
        db = plyvel.DB(str(data_dir), create_if_missing=False)
    except plyvel.IOError as exc:
        return "lock" in str(exc).lower()
    except plyvel.Error:
        return False
    db.close()
    return False


def restore_store(src: str | os.PathLike[str], data_dir: str | os.PathLike[str], chain: bytes) -> dict[str, Any]:
    """Copy the backup ``src`` into the empty or absent ``data_dir`` of a stopped node of chain ``chain``."""
    src, data_dir = Path(src), Path(data_dir)
    manifest = read_manifest(src)
    if manifest.get("chain") != chain.hex():
        raise BackupError(f"restore: {src} is a backup of chain {str(manifest.get('chain'))[:16]}…, this node's "
                          f"genesis is {chain.hex()[:16]}…")
    if store_in_use(data_dir):
        raise BackupError(f"restore: {data_dir} is in use by a running node: stop it first")
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(f"restore: {data_dir} is not empty: `rantai-node reset` it first (or choose an empty "
                          f"data_dir)")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if data_dir.exists():
        data_dir.rmdir()
    shutil.copytree(src, data_dir, ignore=shutil.ignore_patterns(MANIFEST, "LOCK"))
    try:
        storage = Storage(data_dir, chain, create=False)
    except StorageError:
        shutil.rmtree(data_dir)
        raise
    try:
        if storage.head() != (manifest["height"], bytes.fromhex(manifest["head_hash"])) and manifest["height"]:
            raise BackupError(f"restore: the copy's head is not the manifest's (height {manifest['height']})")
    finally:
        storage.close()
    return manifest


def reset_store(data_dir: str | os.PathLike[str]) -> int:
    """Delete a stopped node's store (every file under ``data_dir``); the number of files deleted."""
    data_dir = Path(data_dir)
    if store_in_use(data_dir):
        raise BackupError(f"reset: {data_dir} is in use by a running node: stop it first")
    if not data_dir.exists():
        return 0
    if any(data_dir.iterdir()) and not (data_dir / "CURRENT").exists() and not (data_dir / CHAIN_DIR).exists():
        raise BackupError(f"reset: {data_dir} does not look like a node's store; delete it by hand if you mean it")
    n = sum(len(files) for _, _, files in os.walk(data_dir))
    shutil.rmtree(data_dir)
    data_dir.mkdir()
    return n


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def backup_router(node: Node) -> APIRouter:
    """``POST /v1/admin/backup``: the running node writes a consistent backup (``rantai-node backup``).

    Served to loopback clients only: it writes files on the node's host, so only someone on that host
    (or in its container) may ask for it.
    """
    router = APIRouter()

    @router.post("/v1/admin/backup", summary="Write a consistent backup of this node's store (loopback only)")
    async def post_backup(request: Request) -> Response:
        if not _loopback(client_address(request.scope)):
            raise ApiError(403, "not loopback", "POST /v1/admin/backup is served to clients on the node's own "
                           "host only (run rantai-node backup there)")
        body = load_json(await read_body(request, 64 * 1024), "body")
        where = body.get("dir") if isinstance(body, dict) else None
        if not isinstance(where, str) or not os.path.isabs(where):
            raise ApiError(400, "bad request", 'body: {"dir": ABSOLUTE PATH} expected')
        if not node.started:
            raise ApiError(503, "unavailable", "node: not running")
        manifest = await asyncio.to_thread(backup_store, node.storage, where, node=node.name)
        return respond(request, {**manifest, "dir": where})

    return router
