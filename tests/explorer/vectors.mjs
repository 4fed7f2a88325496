// Runs the conformance vectors of tests/vectors/ through the browser verifier (node/explorer/verify.js),
// case by case, as tests/client/test_vectors.py's run() does with the reference. Served next to the
// explorer's assets by tests/explorer/test_vectors_browser.py and run in headless Chromium.
import * as v from "/explorer/verify.js";

async function judge(kind, c, genesis) {
  const bytes = (h) => v.unhex(h);
  if (kind === "encoding") { v.decode(bytes(c.bytes)); return; }
  if (kind === "records") {
    const r = await v.parseRecord(bytes(c.record));
    await v.checkRecord(r, genesis);
    return;
  }
  if (kind === "blocks") {
    const block = await v.parseBlock(bytes(c.block));
    const p = c.parent;
    await v.checkBlock(block, genesis, { height: p.height, hash: bytes(p.hash), timestamp: p.timestamp },
      { memory: c.memory || null, digests: await v.blockDigests(block), nowMs: c.now_ms ?? null });
    for (const r of block.records) await v.checkRecord(r, genesis);
    return;
  }
  if (kind === "certificates") {
    const header = await v.parseHeader(v.decode(bytes(c.header)));
    const cert = v.parseCertificate(v.decode(bytes(c.certificate)), header.height);
    await v.checkCertificate(cert, genesis, header);
    return;
  }
  if (kind === "receipts") { await v.verifyReceipt(await v.receiptFromJson(c.file), genesis); return; }
  if (kind === "heads") { await v.checkHead(v.decode(bytes(c.head)), genesis); return; }
  if (kind === "governance") {
    if ("receipt" in c) { await v.verifyReceipt(await v.receiptFromJson(c.receipt), genesis); return; }
    const gov = new v.Governance(genesis);
    let parent = { height: 0, hash: genesis.hash, timestamp: 0 };
    for (const raw of c.blocks) {
      const block = await v.parseBlock(bytes(raw));
      const consortium = gov.at(parent.height + 1);
      await v.checkBlock(block, consortium, parent, { digests: await v.blockDigests(block), governance: gov });
      for (const r of block.records) await v.checkRecord(r, consortium);
      parent = { height: Number(block.header.height), hash: block.header.hash, timestamp: block.header.timestamp };
    }
    for (const want of c.expect || []) {
      const got = gov.at(want.height).summary();
      if (JSON.stringify(got) !== JSON.stringify(want.consortium)) {
        return { mismatch: `consortium at ${want.height}: ${JSON.stringify(got)}` };
      }
    }
    return;
  }
  throw new Error(`unknown kind ${kind}`);
}

/** {name: {valid, rule, message}} for every case of one vector file. */
export async function runFile(kind, doc, genesisText) {
  const genesis = await v.parseGenesis(genesisText);
  if (v.hex(genesis.hash) !== doc.genesis_hash) throw new Error("the genesis hash differs from the file's");
  const out = {};
  for (const c of doc.cases) {
    try {
      const extra = await judge(kind, c, genesis);
      out[c.name] = extra && extra.mismatch ? { valid: false, rule: "summary", message: extra.mismatch } : { valid: true };
    } catch (e) {
      out[c.name] = { valid: false, rule: v.ruleOf(e, `no rule (${e.name})`), message: e.message };
    }
  }
  return out;
}

/** tests/vectors/merkle/{inclusion,consistency}/*.json: per case, the error kind the browser raised
 * ("InvalidProof", "RootMismatch") or null, as their want_error says (tests/client/test_merkle.py). */
export async function runMerkle(kind, doc) {
  const out = [];
  for (const c of doc.cases) {
    try {
      if (kind === "inclusion") await v.verifyInclusion(c.index, c.size, v.unhex(c.leaf), c.proof.map(v.unhex), v.unhex(c.root));
      else await v.verifyConsistency(c.old_size, c.new_size, v.unhex(c.old_root), v.unhex(c.new_root), c.proof.map(v.unhex));
      out.push(null);
    } catch (e) {
      out.push(e.kind || `not a proof error: ${e.message}`);
    }
  }
  return out;
}
