"""The long fault-injection run: ``python -m tests.faults.run --kills 100 --partitions 20`` (``make faults``).

Kill steps and partition periods, shuffled, under client load, on one devnet wired through the proxy;
then the end-of-run checks of tests/faults/harness.py. Prints one summary JSON on stdout (step lines
go to stderr) and exits 1 if a record was lost, the chains differ, an audit failed or a step stalled.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from .harness import FaultNet, StepFailed, say


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.faults.run")
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--threads", type=int, default=3, help="client load threads")
    ap.add_argument("--log-level", default="warning", help="the validators' log level (info shows view changes)")
    ap.add_argument("--no-term", action="store_true", help="no SIGTERM-primary steps (kill -9 only)")
    ap.add_argument("--no-proxy", action="store_true", help="validators talk directly (kill steps only)")
    ap.add_argument("--dir", default=None, help="where the devnet goes (kept); default: a temporary folder")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(2), "big")
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="rantai-faults-"))
    say(f"seed {seed}, devnet in {work}")
    started = time.monotonic()
    failure = None
    with FaultNet(work, seed=seed, log_level=args.log_level, proxy=not args.no_proxy) as fn:
        fn.load.start(threads=args.threads)
        steps = ["kill"] * args.kills + ["partition"] * args.partitions
        fn.rng.shuffle(steps)
        try:
            for k, step in enumerate(steps):
                say(f"step {k + 1}/{len(steps)}")
                try:
                    fn.kill_step(term=not args.no_term) if step == "kill" else fn.partition_step()
                except StepFailed as exc:  # a stall: noted, the network restored, the run goes on
                    say(f"STEP STALLED: {exc}")
                    fn.recover(f"step {k + 1} ({step}): {exc}")
        except StepFailed as exc:  # even the recovery stalled
            failure = str(exc)
            say(f"RUN STOPPED: {failure}")
        summary = fn.finish()
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["step_failure"] = failure
    summary["devnet"] = str(work)
    print(json.dumps(summary, indent=2))
    bad = (failure or summary["stalls"] or summary["crashes"] or summary["lost"] or summary["forks"]
           or summary["short_chains"] or not summary["audits_ok"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
