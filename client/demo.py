"""``rantai demo``: a newcomer's first minute — a local network and one coffee shipment, verified end to end.

The journey (Indonesian coffee, from an Aceh cooperative to a café in Amsterdam) uses each of
the EPCIS event kinds an SME meets first, each recorded by a different member with its own key:
commissioning (ObjectEvent ADD), roasting (TransformationEvent), packing (AggregationEvent),
shipping and receiving (ObjectEvent with source and destination), and a retail sale. Every step
is submitted, committed by the validators, and its receipt checked offline against the genesis
file; the bag's whole journey is then traced back through the pallet and the green-coffee sacks.

Governance is part of the story: the café is not in the genesis. It makes its own key and proof of
possession and asks to join; one of the three admin organisations proposes it, its first sale is
refused, a second admin approves (a majority of three), and once the change is in force (a few
blocks later: the devnet's pipelining window is small) the café records the sale. Its receipt still
verifies with the genesis file alone: it carries the change entries that made the café a member.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from . import trace
from .devnet import Devnet
from .format.epcis import builders as b
from .format.receipts import Receipt
from .http import Client, VerifiedRecord

__all__ = ["MEMBERS", "run_demo"]

# (name in the genesis, organisation, what it does in the story)
MEMBERS = {
    "gayo-coop": ("Koperasi Kopi Gayo", "a farmers' cooperative in the Gayo highlands, Aceh"),
    "medan-roastery": ("PT Sangrai Medan", "a roaster in Medan"),
    "belawan-packers": ("CV Kemas Belawan", "a packing house at Belawan port"),
    "sumatra-export": ("PT Ekspor Kopi Sumatra", "the exporter"),
    "rotterdam-import": ("Koffie Import Rotterdam BV", "the importer in Rotterdam"),
}
ADMINS = ("gayo-coop", "sumatra-export", "rotterdam-import")  # a change needs a majority of them: two
CAFE = ("kafe-senja", "Kafe Senja Amsterdam", "a café in Amsterdam, not in the genesis")
# The devnet's pipelining window: a change is in force window + 1 blocks after its approval.
DEMO_PARAMS = {"window": 2}

WIB = timezone(timedelta(hours=7), "WIB")  # Jakarta / Medan
CET = timezone(timedelta(hours=1), "CET")  # Rotterdam / Amsterdam in winter

# GS1 company prefixes of the story's companies (made up, well-formed).
GAYO, MEDAN, BELAWAN, EXPORT, IMPORT, KAFE = "8991234", "8995678", "8990011", "8992222", "8712345", "8719876"


@dataclass(frozen=True)
class Step:
    member: str
    headline: str
    explain: str
    event: dict[str, Any]


def journey(run: str, start: datetime) -> tuple[list[Step], str, str, list[str]]:
    """The first five events of one journey (the café's part is ``last_mile``); ``run`` makes its
    serial numbers unique on a reused chain."""
    sacks = [b.sgtin(GAYO, "10001", f"{run}{i}") for i in range(1, 4)]
    bags = [b.sgtin(MEDAN, "20002", f"{run}{i}") for i in range(1, 5)]
    pallet = b.sscc(BELAWAN, f"{run}01")
    farm, roastery, packhouse = b.sgln(GAYO, "00001"), b.sgln(MEDAN, "00002"), b.sgln(BELAWAN, "00003")
    port_rtm = b.sgln(IMPORT, "00004")
    t = start
    steps = [
        Step("gayo-coop", "commissioned 3 sacks of green Gayo arabica",
             "ObjectEvent ADD · bizStep commissioning: the sacks get their GS1 serial numbers (SGTIN)",
             b.commission(sacks, farm, t, lot=f"GAYO-{run}", tz=WIB)),
        Step("medan-roastery", "roasted the 3 sacks into 4 bags of roasted beans",
             "TransformationEvent: inputs consumed, outputs created — the link from bag back to farm",
             b.transform(sacks, bags, t + timedelta(days=3), biz_location=roastery, lot=f"ROAST-{run}", tz=WIB)),
        Step("belawan-packers", "packed the 4 bags onto pallet " + pallet.rsplit(":", 1)[-1],
             "AggregationEvent ADD · bizStep packing: the bags now travel inside the pallet (SSCC)",
             b.pack(pallet, bags, t + timedelta(days=4), biz_location=packhouse, tz=WIB)),
        Step("sumatra-export", "shipped the pallet from Belawan to Rotterdam",
             "ObjectEvent OBSERVE · bizStep shipping · in_transit, with source and destination parties",
             b.ship([pallet], b.pgln(EXPORT, "00001"), b.pgln(IMPORT, "00001"), t + timedelta(days=5),
                    source_location=packhouse, destination_location=port_rtm, read_point=packhouse,
                    po=f"PO-{run}", tz=WIB)),
        Step("rotterdam-import", "received the pallet in Rotterdam",
             "ObjectEvent OBSERVE · bizStep receiving: the importer confirms arrival",
             b.receive([pallet], b.pgln(EXPORT, "00001"), b.pgln(IMPORT, "00001"), t + timedelta(days=33),
                       source_location=packhouse, destination_location=port_rtm, biz_location=port_rtm,
                       po=f"PO-{run}", tz=CET)),
    ]
    return steps, bags[0], pallet, sacks


def last_mile(cafe: str, bag: str, pallet: str, start: datetime) -> tuple[list[Step], Step]:
    """After the café joined: the importer unpacks the pallet and ships bag 1 to it (these blocks also
    carry the chain to the height where the café's membership is in force); then the café's sale."""
    port_rtm, shop = b.sgln(IMPORT, "00004"), b.sgln(KAFE, "00005")
    t = start + timedelta(days=36)
    steps = [
        Step("rotterdam-import", "unpacked the pallet",
             "AggregationEvent DELETE · bizStep unpacking: the bags leave the pallet",
             b.unpack(pallet, None, t, biz_location=port_rtm, tz=CET)),
        Step("rotterdam-import", "shipped bag 1 to the café",
             "ObjectEvent OBSERVE · bizStep shipping, to the new member's party",
             b.ship([bag], b.pgln(IMPORT, "00001"), b.pgln(KAFE, "00001"), t + timedelta(days=1),
                    source_location=port_rtm, destination_location=shop, tz=CET)),
    ]
    sale = Step(cafe, "sold bag 1 to a customer", "ObjectEvent OBSERVE · bizStep retail_selling · retail_sold",
                b.sell([bag], t + timedelta(days=4), biz_location=shop, tz=CET))
    return steps, sale


def places() -> dict[str, str]:
    """Readable names of the story's locations (the ledger holds their GS1 ids)."""
    return {
        b.sgln(GAYO, "00001"): "Gayo highlands, Aceh", b.sgln(MEDAN, "00002"): "roastery, Medan",
        b.sgln(BELAWAN, "00003"): "Belawan port", b.sgln(IMPORT, "00004"): "Rotterdam port",
        b.sgln(KAFE, "00005"): "café, Amsterdam",
    }


def journey_table(timeline: list[trace.Step], names: dict[str, str]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("#", "date", "what happened", "where", "recorded by", "block"):
        table.add_column(col, overflow="fold", no_wrap=col in ("#", "date", "block"))
    for i, s in enumerate(timeline, 1):
        where = s.where[3:] if s.where.startswith("to ") else s.where
        table.add_row(str(i), s.when[:10], _plain(s.event), names.get(where, where),
                      s.who.split(" (", 1)[-1].rstrip(")"), str(s.height))
    return table


def _plain(event: dict[str, Any]) -> str:
    """What an event says, in words for someone who never heard of EPCIS."""
    step = str(event.get("bizStep", "")).rsplit(":", 1)[-1]
    etype = event.get("type")
    if etype == "TransformationEvent":
        return f"{len(event.get('inputEPCList', []))} sacks roasted into {len(event.get('outputEPCList', []))} bags"
    if etype == "AggregationEvent":
        if event.get("action") == "DELETE":
            return "bags unpacked from the pallet"
        return f"{len(event.get('childEPCs', []))} bags packed onto a pallet"
    n = len(event.get("epcList", []))
    things = "pallet" if n == 1 and "sscc" in str(event.get("epcList")) else ("bag" if n == 1 else f"{n} items")
    return {"commissioning": f"{n} sacks labelled (commissioned)", "shipping": f"{things} shipped",
            "receiving": f"{things} received", "retail_selling": f"{things} sold"}.get(step, step or str(etype))


def lineage(client: Client, item: str, parents: list[str], inputs: list[str]) -> list[VerifiedRecord]:
    """The item's verified history, plus its pallet's and its ingredients', in chain order, once each."""
    seen: dict[bytes, VerifiedRecord] = {}
    for ident in [item, *parents, *inputs]:
        for r in client.history(ident):
            seen.setdefault(r.id, r)
    return sorted(seen.values(), key=lambda r: (r.height, r.index))


def _rantai_command() -> str:
    """How the reader can call ``rantai`` from here: the virtualenv's script unless it is on PATH."""
    import shutil
    import sys

    script = Path(sys.executable).with_name("rantai")
    on_path = shutil.which("rantai")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "rantai"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _genesis_members() -> tuple[str, ...]:
    """``init-network --members`` specs: every member submits and audits; the admins also govern."""
    return tuple(f"{name}={org}:submitter+auditor" + ("+admin" if name in ADMINS else "")
                 for name, (org, _) in MEMBERS.items())


def _older_demo(genesis: Any) -> bool:
    """A network made by the demo before governance: the café in the genesis, no admins."""
    return all(genesis.member_by_name(m) is not None for m in MEMBERS) and not genesis.admins()


def _refresh(client: Client) -> None:
    from .governance_cli import refresh_changes

    refresh_changes(client)


def _cafe_name(client: Client) -> tuple[str, str]:
    """The café joining this run: ``kafe-senja`` the first time; on a reused chain, where it already
    joined, a new branch (``kafe-senja-2`` …), so every run shows a join."""
    latest = client.governance.latest
    name, org, n = CAFE[0], CAFE[1], 1
    while latest.member_by_name(name) is not None:
        n += 1
        name, org = f"{CAFE[0]}-{n}", f"{CAFE[1]} (branch {n})"
    return name, org


def run_demo(
    dir: str | Path = ".rantai/demo",
    *,
    base_port: int = 7200,
    keep: bool = False,
    console: Console | None = None,
    devnet_factory: Callable[..., Devnet] = Devnet,
) -> dict[str, Any]:
    console = console or Console()
    dir = Path(dir)
    net = devnet_factory(dir, validators=4, base_port=base_port, members=_genesis_members(), params=DEMO_PARAMS)
    if net.genesis_path.exists() and _older_demo(net.genesis):
        console.print(f"[yellow]{dir}/ holds a network made by an older demo (no admins, so nobody could admit a "
                      "new member); recreating it[/]")
        shutil.rmtree(dir)
    created = net.init()
    genesis = net.genesis
    missing = [m for m in (*MEMBERS, *ADMINS) if genesis.member_by_name(m) is None]
    if missing or not genesis.admins():
        raise SystemExit(f"error: {dir} holds another network (members {missing} missing); "
                         "remove it or pass another --dir")
    console.print(Panel.fit(
        "[bold]rantai[/] — a shared, tamper-evident logbook for supply chains.\n"
        "Four [bold]validators[/] (think: four independent companies' servers) keep identical copies. "
        "A record counts only\n"
        "once 3 of the 4 have signed off on the block holding it, so no single operator can rewrite or hide history.\n"
        "Each step below is a [bold]GS1 EPCIS[/] event — the global standard for 'what happened to which item, "
        "when, where,\n"
        "why' — signed by the business that recorded it, then checked with nothing but the network's genesis file.\n"
        f"Who may record is decided by the members: {', '.join(MEMBERS[a][0] for a in ADMINS)} are [bold]admins[/];\n"
        "a new member joins once a majority of them approve.",
        title="welcome"))
    verb = "created" if created else "reusing"
    console.print(f"[dim]{verb} a 4-validator network in {dir}/ (genesis {net.genesis_path})[/]")
    net.start()
    results: dict[str, Any] = {"steps": []}
    n = 0
    try:
        net.wait_ready(timeout=60)
        urls = net.urls
        console.print(f"[dim]validators: {', '.join(urls)}[/]\n")
        run = time.strftime("%H%M%S")
        start = datetime.now(WIB).replace(microsecond=0) - timedelta(days=40)
        steps, bag, pallet, sacks = journey(run, start)
        receipts_dir = dir / "receipts"
        receipts_dir.mkdir(parents=True, exist_ok=True)
        keys = {m: net.member_key(m) for m in MEMBERS}
        orgs = {m: org for m, (org, _) in MEMBERS.items()}

        def record(step: Step, key: Any) -> Receipt:
            nonlocal n
            n += 1
            with Client(genesis, urls, identity=key) as client:
                t0 = time.perf_counter()
                receipt = client.submit(step.event, wait=True)
                ms = (time.perf_counter() - t0) * 1000
            assert isinstance(receipt, Receipt)
            path = receipts_dir / f"{run}-{n}-{step.member}.json"
            path.write_text(receipt.to_json(genesis.hash), encoding="utf-8")
            Receipt.from_json(path.read_text(encoding="utf-8")).verify(genesis)  # offline, genesis only
            votes = len(receipt.certificate.votes)
            role = MEMBERS[step.member][1] if step.member in MEMBERS else CAFE[2].split(",")[0] + ", now a member"
            console.print(f"[green]✓[/] [bold]{n}. {orgs[step.member]}[/] ({role}) {step.headline}")
            console.print(f"   [dim]{step.explain}[/]")
            console.print(f"   [dim]committed in block {receipt.height} in {ms:.0f} ms, signed by {votes} of "
                          f"{len(genesis.validators)} validators; receipt verified offline: {path}[/]")
            results["steps"].append({"member": step.member, "height": receipt.height,
                                     "record_id": receipt.record_id.hex(), "receipt": str(path)})
            return receipt

        for step in steps:
            record(step, keys[step.member])
        results["join"] = _join(console, genesis, urls, dir, keys, orgs, run, start, bag, pallet, record)
        reader = keys[ADMINS[0]]  # reads are signed too: this network's read policy is "members"
        with Client(genesis, urls, identity=reader) as client:
            records = lineage(client, bag, [pallet], sacks)
            _refresh(client)
            # Names of members who joined later too (the verified changes know them; the genesis does not).
            names = SimpleNamespace(members={**genesis.members, **client.governance.latest.members})
        console.print()
        console.print(f"[bold]The journey of bag {bag}[/]")
        console.print("[dim]read back from the validators; every line verified against the genesis file "
                      "(signature, Merkle proof, 3-of-4 validator certificate, and the café's membership change)[/]")
        console.print(journey_table(trace.timeline(records, bag, names), places()))
        results.update(bag=bag, pallet=pallet, traced=len(records))
        g = net.genesis_path
        rantai = _rantai_command()
        key = f"--key {net.member_key_path(ADMINS[0])}"
        up = "" if keep else ("\n(trace, audit, members, gov, the API docs and the explorer need the network up: "
                              f"`{rantai} demo --keep`)")
        console.print(Panel.fit(
            f"{rantai} trace '{bag}' --genesis {g} --node {urls[0]} {key}   [dim]# reads are signed[/]\n"
            f"{rantai} verify {results['steps'][-1]['receipt']} --genesis {g}   [dim]# offline, even for the café[/]\n"
            f"{rantai} members --genesis {g} --node {urls[0]} {key}   [dim]# who may record now, verified[/]\n"
            f"{rantai} gov list --genesis {g} --node {urls[0]} {key}\n"
            f"{rantai} audit --genesis {g} --node {urls[0]} {key}\n"
            f"API docs in a browser: {urls[0]}/docs\n"
            f"the bag's journey in a browser, verified there: {urls[0]}/explorer/#/item/{bag}" + up,
            title="explore further"))
    finally:
        if not keep:
            net.stop()
            console.print("[dim]validators stopped; the chain stays in " + str(dir) + "/ for the next run[/]")
        else:
            console.print(f"[dim]validators still running (pids {', '.join(str(p.pid) for p in net.procs.values())}); "
                          f"stop them with: kill {' '.join(str(p.pid) for p in net.procs.values())}[/]")
    return results


def _join(console: Console, genesis: Any, urls: list[str], dir: Path, keys: dict[str, Any], orgs: dict[str, str],
          run: str, start: datetime, bag: str, pallet: str, record: Callable[[Step, Any], Receipt]) -> dict[str, Any]:
    """The café asks to join, one admin proposes, its sale is refused, a second admin approves, the
    importer's next records carry the chain to the height the change is in force, then the café sells."""
    from . import governance_cli as gc
    from .format.errors import RantaiError
    from .format.keys import generate, save_key
    from .format.records import sign_event

    proposer, approver = ADMINS[0], ADMINS[1]
    with Client(genesis, urls, identity=keys[proposer]) as client:
        gc.refresh_changes(client)
        cafe, cafe_org = _cafe_name(client)
    orgs[cafe] = cafe_org
    key_path = dir / "members" / f"{cafe}.pem"
    cafe_key = generate()
    key_path.unlink(missing_ok=True)  # a key left by an interrupted run that never joined
    save_key(cafe_key, key_path)
    proof = gc.make_proof(cafe_key, genesis.hash, cafe)
    console.print()
    console.print(f"[bold]→ {cafe_org}[/] ({CAFE[2]}) asks to join. It made its own key ({key_path}) and signed a "
                  "[bold]proof of possession[/] with it, so nobody can enrol a key that is not theirs:")
    console.print(f"   [dim]`rantai gov prove --key {key_path.name} --name {cafe}` → public key "
                  f"{cafe_key.public_key.hex()[:16]}…, proof {proof.hex()[:16]}…[/]")
    change = {"op": "add_member", "name": cafe, "organisation": cafe_org, "public_key": cafe_key.public_key,
              "roles": ["submitter"], "proof": proof}
    with Client(genesis, urls, identity=keys[proposer]) as client:
        entry, receipt = gc.submit_change(client, change)
        view, p = gc.proposal_after(client, entry.id, receipt)
    console.print(f"[green]✓[/] [bold]{orgs[proposer]}[/] (admin) proposed: {gc.describe_change(change)}")
    console.print(f"   [dim]`rantai gov propose add-member …` · proposal {entry.id.hex()[:16]} in block "
                  f"{receipt.height}; {view.status_words(p)}[/]")

    steps, sale = last_mile(cafe, bag, pallet, start)
    early = sign_event(cafe_key, genesis, sale.event)
    with Client(genesis, urls, identity=keys[proposer]) as client:
        try:
            client.submit_record(early, wait=True)
            refused = ""
        except RantaiError as exc:
            refused = str(gc.refusal(exc))
    if not refused:  # pragma: no cover - the validators would have broken the membership rule
        raise RuntimeError("the café's sale was accepted before it was a member")
    console.print(f"[red]✗[/] [bold]{cafe_org}[/] tries to record a sale now: [red]refused[/] — {refused}")

    with Client(genesis, urls, identity=keys[approver]) as client:
        _, receipt = gc.submit_change(client, {"op": "approve", "proposal": entry.id})
        view, p = gc.proposal_after(client, entry.id, receipt)
    effective = p["effective"]
    console.print(f"[green]✓[/] [bold]{orgs[approver]}[/] (admin) approved: 2 of 3 admins, a majority")
    console.print(f"   [dim]`rantai gov approve {entry.id.hex()[:8]}` · block {receipt.height}; "
                  f"{view.status_words(p)}. Every validator switches at that same height, "
                  "so none counts it earlier than the others.[/]")
    for step in steps:
        record(step, keys[step.member])
    filler = 0
    while True:  # normally already there: the importer's two records filled the window
        with Client(genesis, urls, identity=keys[proposer]) as client:
            head = client.head().height
        if head + 1 >= effective:
            break
        filler += 1
        check = Step("rotterdam-import", "checked the bags in the warehouse", "ObjectEvent OBSERVE · bizStep storing",
                     b.sell([bag], start + timedelta(days=37, minutes=filler), biz_location=b.sgln(IMPORT, "00004"),
                            tz=CET) | {"bizStep": "storing", "disposition": "in_progress"})
        record(check, keys["rotterdam-import"])
    console.print(f"   [dim]block {effective} reached: {cafe_org} is a member from now on[/]")
    receipt = record(sale, cafe_key)  # its client learns of its membership from /v1/changes, verified
    return {"cafe": cafe, "proposal": entry.id.hex(), "effective": effective, "refused": refused,
            "sale_height": receipt.height}


import click  # noqa: E402  (kept beside the command it serves)


@click.command("demo")
@click.option("--dir", "dir_", default=".rantai/demo", show_default=True, help="where the demo network lives (reused)")
@click.option("--base-port", default=7200, show_default=True, help="validator i listens on 127.0.0.1:base-port+i")
@click.option("--keep", is_flag=True, help="leave the validators running afterwards")
def demo_command(dir_: str, base_port: int, keep: bool) -> None:
    """Start a local 4-validator network, record a coffee shipment's journey, and verify it."""
    run_demo(dir_, base_port=base_port, keep=keep)
