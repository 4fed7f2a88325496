"""The store's check of itself at start: its head, its blocks and its indexes agree, or it is repaired.

A node that serves from a store it has not looked at can answer a head it holds no block for, or
stream a chain that stops short. So before the node runs, ``check_store``:

1. scans the keys of the block database from height 1 to the head with LevelDB's checksums on
   (``Storage.scan_chain``): every height has its block and its certificate, and no table is
   truncated or has a flipped byte. The keys are dense, so the scan is the count; it reads the
   chain's bytes once, in C, and Python sees two keys per block;
2. checks the last ``TAIL`` blocks below that point with the one validity code
   (``validity.check_block``: height, hash links, records root …; ``check_certificate``): any
   byte of a block changes its header hash or its records root, so a damaged block fails here
   even when LevelDB's checksums pass. Record signatures are not re-checked: they were when the
   block was stored, and the records root covers every byte of every record;
3. checks the head names the hash of the block at its height;
4. checks the index reached the same height: every record of the highest non-empty block of the
   tail is located at its (height, index) by the record index, and its event by the EPCIS index.
   The index is written in the same synced batch as the head, so it cannot be ahead of it.

What fails is repaired when it is only a matter of blocks (they come back from peers, verified by
catch-up with the same validity code): a table LevelDB cannot read is dropped by RepairDB, and the
head is lowered to the last height below which everything checked, with the index entries above it
deleted. Damage to the index database itself is not repaired (a hole in an index cannot be found
by looking at it): the node refuses to start with one line that says what and how to recover.
"""

from __future__ import annotations

import logging

from rantai.client.format.blocks import Block
from rantai.client.format.encoding import decode
from rantai.client.format.errors import RantaiError
from rantai.client.format.genesis import Genesis
from rantai.client.format.validity import Parent, certificate_of, check_block, check_certificate

from .epcis_index import lookup_hash, record_digest
from .ledger import replay_governance
from .storage import RECOVER, Storage, StoreDamaged

__all__ = ["TAIL", "check_store"]

log = logging.getLogger("rantai.node")

TAIL = 64


def check_store(storage: Storage, genesis: Genesis, *, tail: int = TAIL) -> str | None:
    """Check ``storage`` (see the module's text); repair it when only blocks are lost.

    Returns None when the store is sound, else one line saying what was repaired; raises
    ``StoreDamaged`` (one line: what is damaged, and how to recover) when it cannot be repaired.
    """
    where = f"data_dir {storage.path}"
    head, head_hash = storage.head()
    notes = list(storage.repaired)
    good, problem = storage.scan_chain(head)
    if problem is not None and problem.startswith("unreadable"):
        storage.repair_chain(problem)
        notes.append(storage.repaired[-1])
        good, problem = storage.scan_chain(head)
        if problem is not None and problem.startswith("unreadable"):
            raise StoreDamaged(f"store damaged: the block database is unreadable even after LevelDB's RepairDB "
                               f"({problem}) ({where}); {RECOVER}")
    good, tail_problem, blocks = _check_tail(storage, genesis, good, tail)
    problem = tail_problem or problem
    if good == head and blocks and blocks[-1].hash != head_hash:
        good, problem = head - 1, f"the head names {head_hash.hex()[:16]}…, but block {head} hashes to " \
                                  f"{blocks[-1].hash.hex()[:16]}…"
        blocks = blocks[:-1]
    if index_problem := _check_index(storage, blocks):
        raise StoreDamaged(f"store damaged: {index_problem} under head {head} ({where}); {RECOVER}")
    if good < head:
        parent_hash = blocks[-1].hash if blocks else (genesis.hash if good == 0 else _hash_at(storage, good))
        deleted = storage.truncate(good, parent_hash)
        notes.append(f"blocks {good + 1}..{head} missing or damaged under head {head} ({problem}); head lowered to "
                     f"{good} ({deleted} index entries above it deleted); catch-up fetches the rest from peers")
    if not notes:
        return None
    return f"store repaired ({where}): " + "; ".join(notes)


def _check_tail(storage: Storage, genesis: Genesis, top: int, tail: int) -> tuple[int, str | None, list[Block]]:
    """(last good height, problem, the good tail blocks) for heights top-tail+1..top, by ``validity``."""
    start = max(1, top - tail + 1)
    governance = replay_governance(storage, genesis, top)  # who validated each tail block
    if start == 1:
        parent = Parent.genesis(genesis)
    else:
        raw, _ = storage.raw_block(start - 1)
        try:
            parent = Parent.of(Block.from_bytes(raw or b"").header)
        except (RantaiError, ValueError):
            return start - 2, f"block {start - 1} does not decode", []
    blocks: list[Block] = []
    for height in range(start, top + 1):
        raw, cert_raw = storage.raw_block(height)
        try:
            block = Block.from_bytes(raw or b"")
            consortium = governance.at(height)
            check_block(block, consortium, parent)
            cert = certificate_of(decode(cert_raw) if cert_raw is not None else None, height)
            check_certificate(cert, consortium, block.header)
        except (RantaiError, ValueError) as exc:
            return height - 1, f"block {height}: {exc}", blocks
        blocks.append(block)
        parent = Parent.of(block.header)
    return top, None, blocks


def _check_index(storage: Storage, blocks: list[Block]) -> str | None:
    """The record and EPCIS indexes hold the records of the highest non-empty block of ``blocks``."""
    block = next((b for b in reversed(blocks) if b.records), None)
    if block is None:
        return None
    for i, r in enumerate(block.records):
        if storage.locate(r.id) != (block.height, i):
            return f"the record index does not hold record {i} of block {block.height}"
        hit = lookup_hash(storage.db, record_digest(r))
        if hit is None or hit[1] > block.height:
            return f"the EPCIS index does not hold the event of record {i} of block {block.height}"
    return None


def _hash_at(storage: Storage, height: int) -> bytes:
    raw, _ = storage.raw_block(height)
    return Block.from_bytes(raw or b"").hash
