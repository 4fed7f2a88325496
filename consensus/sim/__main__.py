"""CLI: run seeds, print a summary and every failing seed with the command that replays it."""

from __future__ import annotations

import argparse
import sys

from .cluster import ALL_FAULTS, run_seed
from .reconfig import run_reconfig_seed


def parse_faults(text: str) -> tuple[str, ...]:
    if text == "all":
        return ALL_FAULTS
    if text == "none":
        return ()
    faults = tuple(x for x in text.split(",") if x)
    unknown = set(faults) - set(ALL_FAULTS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown faults {sorted(unknown)}; known: {', '.join(ALL_FAULTS)}")
    return faults


def replay_command(seed: int, nodes: int, faults_arg: str, reconfig: bool = False) -> str:
    extra = " --reconfig" if reconfig else ""
    return f"python -m rantai.consensus.sim --seed {seed} --nodes {nodes} --faults {faults_arg}{extra}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rantai.consensus.sim", description=__doc__)
    ap.add_argument("--seeds", type=int, default=100, help="number of seeds to run (from --start)")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--seed", type=int, default=None, help="replay exactly this seed, verbosely")
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--faults", default="all", help="'all', 'none' or a comma list of: " + ",".join(ALL_FAULTS))
    ap.add_argument("--reconfig", action="store_true",
                    help="also add, remove and re-key validators during the run (sim/reconfig.py)")
    args = ap.parse_args(argv)
    run = run_reconfig_seed if args.reconfig else run_seed
    faults = parse_faults(args.faults)
    seeds = [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))
    failed = []
    commits = views = reconfigs = 0
    for seed in seeds:
        res = run(seed, args.nodes, faults)
        commits += res.commits
        reconfigs += res.reconfigs
        views = max(views, res.view_max)
        if args.seed is not None:
            print(f"seed {seed}: faults drawn {res.faults} byzantine {res.byzantine}")
            print(f"  heights {res.heights} max view {res.view_max} messages {res.messages} steps {res.steps} "
                  f"virtual {res.time_ms} ms")
        if not res.ok:
            failed.append(seed)
            for v in res.violations[:5]:
                print(f"FAIL seed {seed}: {v}")
            print(f"  replay: {replay_command(seed, args.nodes, args.faults, args.reconfig)}")
    print(f"{len(seeds)} seeds, n={args.nodes}, faults={args.faults}: {len(seeds) - len(failed)} ok, "
          f"{len(failed)} failed; {commits} blocks committed, max view {views}"
          + (f", {reconfigs} reconfigurations" if args.reconfig else ""))
    if failed:
        print("failing seeds: " + " ".join(map(str, failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
