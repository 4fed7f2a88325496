"""Per-thread CPU and RSS of a running devnet's validators, every 10 s, with the chain's height: what grows.

    .venv/bin/python tests/node/measure_threads.py PORT OUT.jsonl [DIR]     # while `rantai bench` runs
    .venv/bin/python tests/node/measure_threads.py --report OUT.jsonl [BLOCKS]

Not a test: a measuring aid (docs/performance.md, "Compaction"). The sampler finds the ``rantai.node.cli run``
processes whose command line names DIR (default ``/tmp/``), reads every thread's user + system time from
``/proc/PID/task/*/stat`` and VmRSS / RssAnon / RssFile from ``/proc/PID/status``, and asks validator 0
(PORT) for its height. The report splits each validator's CPU per record, per window of BLOCKS blocks
(default 176, ~100,000 bench records), into the main thread (event loop), LevelDB's background thread
(the newest thread: LevelDB starts it at the first compaction; it has no Python frames, so py-spy does not
show it) and the other threads (disk, verify), assuming the bench's ~568 records per block.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")
RECORDS_PER_BLOCK = 568


def _validators(where: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"rantai.node.cli" in cmd and b"run" in cmd and where.encode() in b" ".join(cmd):
            out.append(int(p.name))
    return sorted(out)


def _threads(pid: int) -> dict[str, float]:
    d = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            f = (t / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        d[t.name] = (int(f[11]) + int(f[12])) / _TICK
    return d


def _rss(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        for name in ("VmRSS", "RssAnon", "RssFile"):
            if line.startswith(name + ":"):
                out[name] = int(line.split()[1]) // 1024
    return out


def sample(port: int, out_path: str, where: str) -> None:
    with open(out_path, "a") as out:
        while True:
            row: dict[str, Any] = {"t": round(time.time(), 1)}
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2) as answer:
                    row["height"] = json.load(answer).get("height")
            except Exception:  # noqa: BLE001 - not up yet, or busy: the row has no height
                row["height"] = None
            for pid in _validators(where):
                try:
                    row[str(pid)] = {"thr": _threads(pid), "rss": _rss(pid)}
                except OSError:
                    pass
            out.write(json.dumps(row) + "\n")
            out.flush()
            time.sleep(10)


def _split(row: dict[str, Any], pid: str) -> tuple[float, float, float]:
    thr = row[pid]["thr"]
    newest = max(thr, key=int)
    rest = sum(v for k, v in thr.items() if k not in (pid, newest))
    return thr.get(pid, 0.0), thr[newest], rest


def report(path: str, blocks: int) -> None:
    rows = [r for r in (json.loads(line) for line in open(path)) if r.get("height")]
    start = rows[0]
    for r in rows[1:]:
        if r["height"] - start["height"] < blocks and r is not rows[-1]:
            continue
        n = (r["height"] - start["height"]) * RECORDS_PER_BLOCK
        per = [[1e6 * (a - b) / n for a, b in zip(_split(r, p), _split(start, p), strict=True)]
               for p in r if p.isdigit() and p in start]
        main, ldb, rest = (round(sum(x[i] for x in per) / len(per)) for i in range(3))
        rss = [r[p]["rss"]["VmRSS"] for p in r if p.isdigit()]
        print(f"heights {start['height']}-{r['height']}: µs per record per validator: main {main}, LevelDB {ldb}, "
              f"other threads {rest}, total {main + ldb + rest}; RSS MB {rss}")
        start = r


if __name__ == "__main__":
    if sys.argv[1] == "--report":
        report(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 176)
    else:
        sample(int(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "/tmp/")
