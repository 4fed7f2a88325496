"""Disk damage to a stopped validator's store, with real processes: each case is either repaired at
start (the node then catches up and its data directory audits clean) or refused with one line that
names the damage. The start-up check is node/storecheck.py; the cases are docs/storage.md's."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .procs import Api, make_devnet, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

V = 3  # the validator whose disk is damaged


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    net = make_devnet(tmp_path_factory.mktemp("damage"))
    api = Api(net)
    try:
        yield net, api
    finally:
        api.close()
        net.stop()


def _data_dir(net) -> Path:
    return net.configs()[V].data_dir


def _log_size(net) -> int:
    path = net.dir / "logs" / f"v{V}.log"
    return path.stat().st_size if path.exists() else 0


def _log_since(net, offset: int) -> str:
    with open(net.dir / "logs" / f"v{V}.log", "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def _commit_blocks(api: Api, n: int) -> None:
    for k in range(n):
        status, res = api.submit(k % 3, api.records(2))
        assert status == 200 and {e["status"] for e in res} == {"committed"}


def _prepare(net, api: Api) -> None:
    """v3 stopped, with older blocks in a table file (``*.ldb``) and the newest in the write-ahead log."""
    if not net.running(V):
        net.start_node(V)
        net.wait_ready(indices=[V], timeout=60)
    _commit_blocks(api, 8)
    top = api.height(0)
    wait_until("v3 caught up", lambda: api.height(V) >= top, describe=api.snapshot)
    assert net.stop_node(V) == 0
    net.start_node(V)  # opening replays the log into a level-0 table
    net.wait_ready(indices=[V], timeout=60)
    _commit_blocks(api, 6)
    top = api.height(0)
    wait_until("v3 caught up", lambda: api.height(V) >= top, describe=api.snapshot)
    assert net.stop_node(V) == 0
    blocks = _data_dir(net) / "blocks"
    assert list(blocks.glob("*.ldb")) and list(blocks.glob("*.log")), sorted(os.listdir(blocks))


def _audit_clean(net) -> None:
    done = subprocess.run([sys.executable, "-m", "rantai.node.cli", "audit", "--data-dir", str(_data_dir(net)),
                           "--genesis", str(net.genesis_path), "--workers", "0"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _expect_repaired(net, api: Api, offset: int, fragment: str) -> None:
    net.wait_ready(indices=[V], timeout=60)
    log = _log_since(net, offset)
    assert "store repaired" in log and fragment in log, log[-3000:]
    _commit_blocks(api, 2)  # traffic: the others' messages tell v3 how far behind it is
    top = api.height(0)
    wait_until("v3 resynced", lambda: api.height(V) >= top, describe=api.snapshot)
    assert net.stop_node(V) == 0
    _audit_clean(net)


def _expect_refused(net, offset: int, fragment: str) -> None:
    proc = net.procs[V]
    assert proc.wait(timeout=60) == 1
    lines = [ln for ln in _log_since(net, offset).splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("rantai-node: store damaged: ") and fragment in lines[-1], lines[-5:]
    assert "Traceback" not in "\n".join(lines)


def _newest(paths) -> Path:
    return max(paths, key=lambda p: int(p.stem))


def _truncate_log(d: Path) -> None:
    log = _newest((d / "blocks").glob("*.log"))
    os.truncate(log, log.stat().st_size // 3)


def _truncate_table(d: Path) -> None:
    table = min((d / "blocks").glob("*.ldb"), key=lambda p: int(p.stem))
    os.truncate(table, table.stat().st_size // 2)


def _flip_byte(d: Path) -> None:
    table = min((d / "blocks").glob("*.ldb"), key=lambda p: int(p.stem))
    with open(table, "r+b") as f:
        f.seek(table.stat().st_size // 3)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x20]))


def _head_above(d: Path) -> None:
    import plyvel

    db = plyvel.DB(str(d), create_if_missing=False)
    try:
        height = struct.unpack(">Q", db.get(b"h")[:8])[0]
        db.put(b"h", struct.pack(">Q", height + 5) + b"\x07" * 32, sync=True)
    finally:
        db.close()


REPAIRED = [
    ("truncated write-ahead log", _truncate_log, "missing or damaged under head"),
    ("truncated table file", _truncate_table, "RepairDB"),
    ("flipped byte in a table file", _flip_byte, "RepairDB"),
    ("head above the last block", _head_above, "missing or damaged under head"),
    ("deleted CURRENT of the block database", lambda d: os.remove(d / "blocks" / "CURRENT"), "CURRENT"),
]


@pytest.mark.parametrize("damage,fragment", [(f, t) for _, f, t in REPAIRED], ids=[n for n, _, _ in REPAIRED])
def test_damaged_block_store_is_repaired_and_resyncs(devnet, damage, fragment):
    net, api = devnet
    _prepare(net, api)
    damage(_data_dir(net))
    offset = _log_size(net)
    net.start_node(V)
    _expect_repaired(net, api, offset, fragment)


def test_deleted_current_of_the_index_is_refused_with_one_line_then_resyncs_when_moved_aside(devnet):
    net, api = devnet
    _prepare(net, api)
    d = _data_dir(net)
    os.remove(d / "CURRENT")
    offset = _log_size(net)
    net.start_node(V)
    _expect_refused(net, offset, "CURRENT file is missing")
    # the line's advice: move the data dir aside and restart
    shutil.move(str(d), str(d) + f".damaged-{int(time.time())}")
    offset = _log_size(net)
    net.start_node(V)
    net.wait_ready(indices=[V], timeout=60)
    _commit_blocks(api, 2)
    top = api.height(0)
    wait_until("v3 resynced", lambda: api.height(V) >= top, describe=api.snapshot)
    assert net.stop_node(V) == 0
    _audit_clean(net)
