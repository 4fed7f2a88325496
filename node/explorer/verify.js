// The rantai verifier, a second implementation of docs/format.md (the first is client/format/):
// records, blocks, commit certificates, receipts, heads and the governance change chain, each
// failure naming its rule of §10 (RuleError.rule). It trusts nothing but the genesis it is given.
// The EPCIS rules (`schema`) are epcis_rules.js, checked with a record's other rules as the reference
// checks them (validity.check_record), and left out of a receipt's check as the reference leaves them
// out (§8: the chain already took the event). The event hash ID (`duplicate event`) is event_hash.js.
import {
  EncodingError, F64, concat, decode, ed25519Verify, encode, equalBytes, hex, hexify, isBytes, isInt, isMap,
  keyId, parseJson, sameValue, sha256, signingBytes, text, unhex,
} from "./canonical.js";
import { validateEvent } from "./epcis_rules.js";
import { uniquenessDigest } from "./event_hash.js";

export class RuleError extends Error {
  constructor(rule, message) { super(`${rule}: ${message}`); this.rule = rule; this.detail = message; }
}
const fail = (rule, message) => new RuleError(rule, message);
/** The rule an error names (a decoding error is `encoding`). */
export const ruleOf = (e, fallback = "error") => (e && typeof e.rule === "string" ? e.rule : fallback);

const HASH = 32, SIG = 64, NONCE = 16;
const HEX16 = /^[0-9a-f]{16}$/;
const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const ROLES = new Set(["submitter", "auditor", "admin"]);
const U64 = 2n ** 64n, I63 = 2n ** 63n;
const isU64 = (v) => isInt(v) && BigInt(v) >= 0n && BigInt(v) < U64;
const isStr = (v) => typeof v === "string";
const keysAre = (m, want) => isMap(m) && m.size === want.length && want.every((k) => m.has(k));

export const DEFAULT_PARAMS = {
  max_block_records: 2048, max_block_bytes: 8 * 1024 * 1024, max_record_bytes: 64 * 1024, checkpoint_interval: 16,
  window: 8, batch_timeout_ms: 2, view_change_timeout_ms: 2000, view_change_timeout_max_ms: 30000,
  max_clock_skew_ms: 15000,
};
export const CHANGEABLE_PARAMS = ["max_block_bytes", "max_block_records", "max_clock_skew_ms", "max_record_bytes"];
// Who may read what (docs/governance.md "Read policy"): never a validity rule, but part of the consortium.
const READ_POLICIES = ["members", "public", "parties"];
const PREFIX = /^[0-9]{4,12}$/;
const prefixesOk = (v) => Array.isArray(v) && v.length <= 64 && v.every((p) => isStr(p) && PREFIX.test(p)) && new Set(v).size === v.length;
/** Two members' GS1 Company Prefixes where one begins the other, in words (client/format/consortium.py: prefix_clash). */
function prefixClash(members) {
  const owned = [];
  for (const m of members) for (const p of m.companyPrefixes || []) owned.push([p, m.name]);
  owned.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : 1));
  for (let i = 1; i < owned.length; i++) {
    if (owned[i][0].startsWith(owned[i - 1][0])) return `GS1 Company Prefix ${owned[i][0]} (${owned[i][1]}) begins with ${owned[i - 1][0]} (${owned[i - 1][1]})`;
  }
  return null;
}

// -- the consortium (format.md §3, §11.1) ---------------------------------------------------------
export class Consortium {
  constructor(o) { Object.assign(this, o); }
  get f() { return Math.floor((this.validators.length - 1) / 3); }
  get quorum() { return this.validators.length - this.f; }
  validatorById(id) { return this.validators.find((v) => v.id === id); }
  memberByName(name) { for (const m of this.members.values()) if (m.name === name) return m; return undefined; }
  validatorByName(name) { return this.validators.find((v) => v.name === name); }
  admins() {
    return [...this.members.values()].filter((m) => m.active && m.roles.has("admin"))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
  approvalsNeeded() { return this.approvals !== null ? this.approvals : Math.floor(this.admins().length / 2) + 1; }
  copy(changes) { return new Consortium({ ...this, version: this.version + 1, ...changes }); }
  /** The consortium as a governance vector's summary states it (tests/vectors/README.md). */
  summary() {
    return {
      members: [...this.members.values()].sort((a, b) => (a.name < b.name ? -1 : 1))
        .map((m) => ({ name: m.name, id: m.id, roles: [...m.roles].sort(), active: m.active })),
      validators: this.validators.map((v) => ({ name: v.name, id: v.id, url: v.url })),
      approvals: this.approvals === null ? "majority" : this.approvals,
      needed: this.approvalsNeeded(),
      params: Object.fromEntries(CHANGEABLE_PARAMS.map((k) => [k, this.params[k]])),
    };
  }
}

async function member(publicKey, name, organisation, roles) {
  return { id: await keyId(publicKey), name, organisation, publicKey, roles: new Set(roles), active: true, companyPrefixes: [] };
}
async function validator(publicKey, name, url) {
  return { id: await keyId(publicKey), name, publicKey, url: url.replace(/\/+$/, "") };
}

/** A genesis file's text -> its consortium at height 0; `hash` (the genesis hash) names the chain. */
export async function parseGenesis(source) {
  const bad = (m) => fail("genesis", m);
  let doc;
  try { doc = parseJson(source); } catch (e) { throw bad(`not valid JSON: ${e.message}`); }
  if (!isMap(doc)) throw bad("top level must be a JSON object");
  for (const k of doc.keys()) {
    if (!["chain_id", "created_at", "validators", "members", "params", "governance", "read_policy"].includes(k)) throw bad(`unknown field ${k}`);
  }
  const chainId = doc.get("chain_id");
  if (!isStr(chainId) || !NAME.test(chainId)) throw bad("chain_id: a name expected");
  let canonical;
  try { canonical = encode(doc); } catch (e) { throw bad(e.message); }
  const key = async (e, where) => {
    let pk;
    try { pk = unhex(e.get("public_key")); } catch { pk = new Uint8Array(0); }
    if (pk.length !== 32) throw bad(`${where}.public_key: 64 hex digits expected`);
    if (e.get("id") !== await keyId(pk)) throw bad(`${where}.id: not derived from its public key`);
    return pk;
  };
  const vs = doc.get("validators");
  if (!Array.isArray(vs) || vs.length < 1) throw bad("validators: a non-empty list expected");
  const validators = [];
  for (const [i, e] of vs.entries()) {
    if (!isMap(e)) throw bad(`validators[${i}]: an object expected`);
    const pk = await key(e, `validators[${i}]`);
    const url = e.get("url");
    if (!isStr(url) || !/^https?:\/\//.test(url)) throw bad(`validators[${i}].url: an http(s) URL expected`);
    validators.push(await validator(pk, String(e.has("name") ? e.get("name") : e.get("id")), url));
  }
  const ms = doc.get("members");
  if (!Array.isArray(ms)) throw bad("members: a list expected");
  const members = new Map();
  for (const [i, e] of ms.entries()) {
    if (!isMap(e)) throw bad(`members[${i}]: an object expected`);
    const pk = await key(e, `members[${i}]`);
    const name = e.get("name"), roles = e.get("roles");
    if (!isStr(name) || !NAME.test(name)) throw bad(`members[${i}].name: a name expected`);
    if (!Array.isArray(roles) || !roles.length || !roles.every((r) => ROLES.has(r))) throw bad(`members[${i}].roles`);
    const org = e.has("organisation") ? e.get("organisation") : name;
    if (!isStr(org)) throw bad(`members[${i}].organisation: a string expected`);
    const m = await member(pk, name, org, roles);
    const prefixes = e.has("company_prefixes") ? e.get("company_prefixes") : [];
    if (!prefixesOk(prefixes)) throw bad(`members[${i}].company_prefixes: distinct GS1 Company Prefixes of 4 to 12 digits expected`);
    m.companyPrefixes = [...prefixes];
    if (members.has(m.id)) throw bad("members: the same key appears twice");
    if ([...members.values()].some((x) => x.name === name)) throw bad("members: two members share a name");
    members.set(m.id, m);
  }
  if (validators.some((v) => members.has(v.id))) throw bad("a key is both a member's and a validator's");
  const clash = prefixClash(members.values());
  if (clash) throw bad(`members: ${clash}`);
  const readPolicy = doc.has("read_policy") ? doc.get("read_policy") : "members";
  if (!READ_POLICIES.includes(readPolicy)) throw bad(`read_policy: one of ${READ_POLICIES.join(", ")} expected`);
  const params = { ...DEFAULT_PARAMS };
  const ps = doc.has("params") ? doc.get("params") : new Map();
  if (!isMap(ps)) throw bad("params must be an object");
  for (const [k, v] of ps) {
    if (!(k in DEFAULT_PARAMS)) throw bad(`params.${k}: unknown parameter`);
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw bad(`params.${k}: a positive integer expected`);
    params[k] = v;
  }
  let approvals = null;
  if (doc.has("governance")) {
    const g = doc.get("governance");
    if (!keysAre(g, ["approvals"])) throw bad('governance: {"approvals": N} expected');
    const a = g.get("approvals");
    if (a !== "majority") {
      if (typeof a !== "number" || !Number.isInteger(a) || a < 1) throw bad("governance.approvals");
      approvals = a;
    }
  }
  return new Consortium({
    hash: await sha256(canonical), chainId, validators, members, params, approvals, since: 0, version: 0,
    retired: new Set(), doc, readPolicy,
  });
}

// -- records (§4) ---------------------------------------------------------------------------------
const COMMON = ["chain", "nonce", "signature", "submitted_at", "submitter", "version"];

/** A signed record (or change entry) from its canonical bytes: decode and shape only. */
export async function parseRecord(raw) {
  const fields = decode(raw);
  if (!isMap(fields)) throw fail("record shape", "a map expected");
  const isChange = fields.has("change");
  if (!keysAre(fields, [...COMMON, isChange ? "change" : "event"])) throw fail("record shape", "fields are not exactly those of a record");
  const version = fields.get("version");
  if (version !== 1) throw fail("record version", "version must be the integer 1");
  const chain = fields.get("chain"), submitter = fields.get("submitter"), nonce = fields.get("nonce");
  const at = fields.get("submitted_at"), body = fields.get(isChange ? "change" : "event"), sig = fields.get("signature");
  if (!isBytes(chain) || chain.length !== HASH) throw fail("record field", "chain must be the 32-byte genesis hash");
  if (!isStr(submitter) || !HEX16.test(submitter)) throw fail("record field", "submitter must be 16 lower-case hex digits");
  if (!isBytes(nonce) || nonce.length !== NONCE) throw fail("record field", "nonce must be 16 bytes");
  if (!isInt(at) || BigInt(at) < 0n || BigInt(at) >= I63) throw fail("record field", "submitted_at must be an integer in [0, 2^63)");
  if (!isMap(body)) throw fail("record field", "event (or change) must be a map");
  if (!isBytes(sig) || sig.length !== SIG) throw fail("record field", "signature must be 64 bytes");
  return { raw, id: await sha256(raw), fields, isChange, kind: isChange ? "change" : "record", chain, submitter,
    signature: sig, event: isChange ? null : body, change: isChange ? body : null };
}

function unsignedBytes(record) {
  const f = new Map(record.fields); f.delete("signature");
  return encode(f);
}

/** A record's rules in the consortium in force at its height (§10.2 order); `schema` (the event's
 * EPCIS rules) last, unless `{ schema: false }` (a receipt's check: §8). */
export async function checkRecord(record, c, { schema = true } = {}) {
  const limit = c.params.max_record_bytes;
  if (record.raw.length > limit) throw fail("too large", `record of ${record.raw.length} bytes, the limit is ${limit}`);
  if (!equalBytes(record.chain, c.hash)) throw fail("wrong chain", "record signed for another chain");
  const m = c.members.get(record.submitter);
  if (m === undefined) {
    if (c.retired.has(record.submitter)) throw fail("member removed", `key ${record.submitter} was removed or rotated away`);
    throw fail("unknown member", `unknown member ${record.submitter}`);
  }
  if (!m.active) throw fail("member suspended", `member ${m.name} is suspended`);
  const need = record.isChange ? "admin" : "submitter";
  if (!m.roles.has(need)) throw fail(record.isChange ? "not an admin" : "role denied", `member ${m.name} lacks the ${need} role`);
  if (!await ed25519Verify(m.publicKey, record.signature, signingBytes(record.kind, record.chain, unsignedBytes(record)))) {
    throw fail("signature does not verify", `signature does not verify for member ${m.name}`);
  }
  if (record.isChange) checkChange(record.change);
  else if (schema) validateEvent(record.event);
}

// -- Merkle (§5, RFC 9162) ------------------------------------------------------------------------
const leafHash = (d) => sha256(concat(new Uint8Array([0]), d));
const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));

export async function merkleRoot(leaves) {
  if (leaves.length === 0) return sha256(new Uint8Array(0));
  let level = await Promise.all(leaves.map(leafHash));
  while (level.length > 1) {
    const next = [];
    for (let i = 0; i < level.length; i += 2) next.push(i + 1 < level.length ? await nodeHash(level[i], level[i + 1]) : level[i]);
    level = next;
  }
  return level[0];
}

const EMPTY_ROOT_HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/** A Merkle proof's failure: `kind` "InvalidProof" (malformed: index, sizes, lengths; nothing hashed)
 * or "RootMismatch" (it leads to another root); both break the rule `inclusion proof`. */
const proofError = (kind, m) => Object.assign(fail("inclusion proof", m), { kind });
const width = (level, size) => (size + (1n << level) - 1n) >> level;
function pathLength(level, index, size) {
  let n = 0n, w = width(level, size);
  while (w > 1n) { if ((index ^ 1n) < w) n += 1n; index >>= 1n; w = (w + 1n) >> 1n; }
  return n;
}
function checkProof(proof, expected, what) {
  if (BigInt(proof.length) !== expected) throw proofError("InvalidProof", `${what}: proof has ${proof.length} hashes, ${expected} expected`);
  proof.forEach((p, i) => { if (!isBytes(p) || p.length !== HASH) throw proofError("InvalidProof", `${what}: proof hash ${i} is not 32 bytes`); });
}
function checkHash(h, what) { if (!isBytes(h) || h.length !== HASH) throw proofError("InvalidProof", `${what} is not 32 bytes`); }

/** RFC 9162 §2.1.3: the path leads from leaf `leaf` (a record id; hashed here) at `index` in a tree of
 * `size` leaves to `root` (client/format/merkle.py verify_inclusion, the same checks in the same order). */
export async function verifyInclusion(index, size, leaf, path, root) {
  checkHash(root, "inclusion proof: root");
  let i = BigInt(index);
  const n = BigInt(size);
  if (!(i >= 0n && i < n)) throw proofError("InvalidProof", `inclusion proof: index ${index} out of range for tree size ${size}`);
  checkProof(path, pathLength(0n, i, n), "inclusion proof");
  let node = await leafHash(leaf), used = 0, w = n;
  while (w > 1n) {
    if (i & 1n) node = await nodeHash(path[used++], node);
    else if (i + 1n < w) node = await nodeHash(node, path[used++]);
    i >>= 1n; w = (w + 1n) >> 1n;
  }
  if (!equalBytes(node, root)) throw proofError("RootMismatch", "inclusion proof: the path leads to another root");
}

/** RFC 9162 §2.1.4: the tree of `oldSize` leaves is a prefix of the one of `newSize` (merkle.py verify_consistency). */
export async function verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof) {
  const o = BigInt(oldSize), n = BigInt(newSize);
  if (!(o >= 0n && o <= n)) throw proofError("InvalidProof", `consistency proof: sizes must satisfy 0 <= old <= new`);
  checkHash(oldRoot, "consistency proof: old root");
  checkHash(newRoot, "consistency proof: new root");
  if (o === 0n || o === n) {
    checkProof(proof, 0n, "consistency proof");
    if (o === 0n ? hex(oldRoot) !== EMPTY_ROOT_HEX : !equalBytes(oldRoot, newRoot)) throw proofError("RootMismatch", "consistency proof: roots differ");
    return;
  }
  let level = 0n;
  while (((o >> level) & 1n) === 0n) level += 1n;
  let index = (o - 1n) >> level;
  const seeded = index !== 0n;
  checkProof(proof, pathLength(level, index, n) + (seeded ? 1n : 0n), "consistency proof");
  const [seed, path] = seeded ? [proof[0], proof.slice(1)] : [oldRoot, proof];
  let oldNode = seed, newNode = seed, used = 0, w = width(level, n);
  while (w > 1n) {
    if (index & 1n) { oldNode = await nodeHash(path[used], oldNode); newNode = await nodeHash(path[used], newNode); used++; }
    else if (index + 1n < w) newNode = await nodeHash(newNode, path[used++]);
    index >>= 1n; w = (w + 1n) >> 1n;
  }
  if (!equalBytes(oldNode, oldRoot)) throw proofError("RootMismatch", "consistency proof: old root");
  if (!equalBytes(newNode, newRoot)) throw proofError("RootMismatch", "consistency proof: new root");
}

// -- headers and blocks (§6) ----------------------------------------------------------------------
const HEADER = ["chain", "height", "prev_hash", "proposer", "record_count", "records_root", "timestamp", "view"];

export async function parseHeader(obj) {
  if (!keysAre(obj, HEADER)) throw fail("header field", "a header has exactly its eight fields");
  for (const k of ["chain", "prev_hash", "records_root"]) {
    if (!isBytes(obj.get(k)) || obj.get(k).length !== HASH) throw fail("header field", `${k} must be 32 bytes`);
  }
  for (const k of ["height", "record_count", "view", "timestamp"]) {
    if (!isU64(obj.get(k))) throw fail("header field", `${k} must be an unsigned 64-bit integer`);
  }
  if (!isStr(obj.get("proposer")) || !HEX16.test(obj.get("proposer"))) throw fail("header field", "proposer must be a validator id");
  const h = Object.fromEntries(HEADER.map((k) => [k, obj.get(k)]));
  h.obj = obj;
  h.hash = await sha256(encode(obj));
  return h;
}

export async function parseBlock(raw) {
  let obj;
  try { obj = decode(raw); } catch (e) { throw fail("encoding", e.message); }
  if (!keysAre(obj, ["header", "records"]) || !Array.isArray(obj.get("records"))) throw fail("block shape", "a map of header and records expected");
  const header = await parseHeader(obj.get("header"));
  const records = [];
  for (const [i, r] of obj.get("records").entries()) {
    if (!isBytes(r)) throw fail("block shape", `record ${i} is not a byte string`);
    try { records.push(await parseRecord(r)); } catch (e) { e.index = i; throw e; }
  }
  return { header, records, raw };
}

export const primaryOf = (c, view) => c.validators[Number(BigInt(view) % BigInt(c.validators.length))].id;

/** The block rules against its parent (§10.2), but the records' own rules. `memory` ({records: {hex id:
 * height}, events: {hex digest: height}}) is what the chain below holds; `digests` the records' `duplicate
 * event` keys (`blockDigests`; null: that rule is the caller's). With `governance`, the block's change
 * entries are checked and applied in order. */
export async function checkBlock(block, c, parent, { memory = null, digests = null, governance = null, nowMs = null } = {}) {
  const h = block.header, height = parent.height + 1;
  const bad = (rule, m, index) => Object.assign(fail(rule, `block ${height}: ${m}`), { index });
  if (!equalBytes(h.chain, c.hash)) throw bad("wrong chain", "belongs to another chain");
  if (Number(h.height) !== height) throw bad("height", `header says height ${h.height}`);
  if (!equalBytes(h.prev_hash, parent.hash)) throw bad("hash link", `prev_hash is not the hash of block ${parent.height}`);
  const p = c.params;
  if (block.raw.length > p.max_block_bytes || block.records.length > p.max_block_records) {
    throw bad("block too large", `${block.raw.length} bytes and ${block.records.length} records`);
  }
  if (Number(h.record_count) !== block.records.length) throw bad("record count", `record_count ${h.record_count} but ${block.records.length} records`);
  if (!equalBytes(await merkleRoot(block.records.map((r) => r.id)), h.records_root)) throw bad("records root", "records_root does not match its records");
  if (h.proposer !== primaryOf(c, h.view)) throw bad("proposer", `${h.proposer} is not the primary of view ${h.view}`);
  if (BigInt(h.timestamp) < BigInt(parent.timestamp)) throw bad("timestamp", "below its parent's");
  if (nowMs !== null && BigInt(h.timestamp) > BigInt(nowMs) + BigInt(p.max_clock_skew_ms)) throw bad("timestamp", "ahead of the clock");
  const seen = new Map();
  for (const [i, r] of block.records.entries()) {
    if (r.raw.length > p.max_record_bytes) throw bad("too large", `record ${i} is ${r.raw.length} bytes`, i);
    const id = hex(r.id);
    if (seen.has(id)) throw bad("duplicate record", `record ${i} repeats record ${seen.get(id)}`, i);
    seen.set(id, i);
    if (memory && memory.records && id in memory.records) throw bad("duplicate record", `record ${i} is already in block ${memory.records[id]}`, i);
  }
  if (digests !== null) {
    const events = new Map();
    for (const [i, d] of digests.entries()) {
      if (d === null) continue; // a governance change: no event
      const key = hex(d);
      if (events.has(key)) throw bad("duplicate event", `record ${i} repeats the event of record ${events.get(key)} (ni:///sha-256;${key})`, i);
      events.set(key, i);
      if (memory && memory.events && key in memory.events) throw bad("duplicate event", `record ${i}: event ni:///sha-256;${key} is already in block ${memory.events[key]}`, i);
    }
  }
  if (governance !== null) {
    const changes = block.records.map((r, i) => [i, r]).filter(([, r]) => r.isChange);
    if (changes.length) {
      try { await governance.apply(height, changes); } catch (e) { throw bad(ruleOf(e, "change refused"), e.detail || e.message); }
    } else {
      governance.height = height;
    }
  }
}

/** Each record's `duplicate event` key (event_hash.js: the CBV 2.0 hash digest, or an error declaration's
 * own key); null for a change entry. */
export const blockDigests = (block) => Promise.all(block.records.map((r) => (r.isChange ? null : uniquenessDigest(r.event))));

// -- certificates (§7) ----------------------------------------------------------------------------
export function parseCertificate(obj, height) {
  if (obj === null) throw fail("missing certificate", `block ${height}: no commit certificate`);
  if (!keysAre(obj, ["block_hash", "height", "view", "votes"])) throw fail("certificate shape", "exactly block_hash, height, view, votes expected");
  certificateShape(obj);
  return { height: obj.get("height"), view: obj.get("view"), block_hash: obj.get("block_hash"), votes: obj.get("votes"), obj };
}
function certificateShape(obj) {
  const bad = (m) => fail("certificate shape", m);
  if (!isU64(obj.get("height"))) throw bad("height must be an unsigned 64-bit integer");
  if (!isU64(obj.get("view"))) throw bad("view must be an unsigned 64-bit integer");
  if (!isBytes(obj.get("block_hash")) || obj.get("block_hash").length !== HASH) throw bad("block_hash must be 32 bytes");
  const votes = obj.get("votes");
  if (!Array.isArray(votes)) throw bad("votes must be a list");
  for (const [i, v] of votes.entries()) {
    if (!Array.isArray(v) || v.length !== 2) throw bad(`vote ${i} must be a [validator id, signature] pair`);
    if (!isStr(v[0]) || !HEX16.test(v[0])) throw bad(`vote ${i}: validator id must be 16 lower-case hex digits`);
    if (!isBytes(v[1]) || v[1].length !== SIG) throw bad(`vote ${i}: signature must be 64 bytes`);
  }
}

const u64be = (v) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(v)); return b; };

/** The commit certificate of `header` in consortium `c` (§7, in the reference's order of checks). */
export async function checkCertificate(cert, c, header) {
  const bad = (rule, m) => fail(rule, `block ${header.height}: ${m}`);
  if (BigInt(cert.height) !== BigInt(header.height)) throw bad("certificate height", `for height ${cert.height}`);
  if (!equalBytes(cert.block_hash, header.hash)) throw bad("certificate block hash", "for another block hash");
  if (BigInt(cert.view) < BigInt(header.view)) throw bad("certificate view", `view ${cert.view} is before the block's ${header.view}`);
  let prev = null;
  const seen = new Set();
  for (const [vid] of cert.votes) {
    if (seen.has(vid)) throw bad("certificate votes", `validator ${vid} signed twice`);
    if (prev !== null && vid < prev) throw bad("certificate votes", "votes not sorted by validator id");
    if (!c.validatorById(vid)) throw bad("certificate votes", `${vid} is not a validator at this height`);
    seen.add(vid); prev = vid;
  }
  if (seen.size < c.quorum) throw bad("certificate quorum", `${seen.size} signatures, ${c.quorum} needed`);
  const body = signingBytes("commit", c.hash, concat(u64be(cert.height), u64be(cert.view), cert.block_hash));
  for (const [vid, sig] of cert.votes) {
    if (!await ed25519Verify(c.validatorById(vid).publicKey, sig, body)) throw bad("certificate signature", `the signature of validator ${vid} does not verify`);
  }
}

// -- receipts (§8) --------------------------------------------------------------------------------
/** A receipt from its wire map (msgpack answers of the API). */
export async function receiptFromObj(obj) {
  const bad = (m) => fail("receipt shape", m);
  if (!keysAre(obj, ["certificate", "header", "index", "path", "record"])) throw bad("exactly certificate, header, index, path, record expected");
  if (!isBytes(obj.get("record"))) throw bad("record must be the signed record's bytes");
  const index = obj.get("index"), path = obj.get("path");
  if (!isInt(index) || BigInt(index) < 0n || !Array.isArray(path)) throw bad("index must be a non-negative integer and path a list");
  if (!path.every((p) => isBytes(p) && p.length === HASH)) throw bad("every path entry must be a 32-byte hash");
  const header = await parseHeader(obj.get("header"));
  const record = await parseRecord(obj.get("record"));
  return { record, index: Number(index), path, header, certificate: parseCertificate(obj.get("certificate"), header.height), changes: [] };
}

const FILE_KEYS = ["format", "genesis_hash", "record_id", "record", "index", "path", "header", "certificate"];
const unhexAs = (v, where, size) => {
  if (!isStr(v) || !/^(?:[0-9a-f]{2})*$/.test(v) || (size !== undefined && v.length !== 2 * size)) {
    throw fail("receipt shape", `${where} must be ${size ? 2 * size + " " : ""}lower-case hex digits`);
  }
  return unhex(v);
};

/** A receipt file (§8.1, §11.8): exact keys, lower-case hex, the readable event equal to the signed one. */
export async function receiptFromJson(source) {
  let doc;
  try { doc = parseJson(source); } catch (e) { throw fail("receipt shape", `not valid JSON: ${e.message}`); }
  return receiptFromDoc(doc, false);
}

async function receiptFromDoc(doc, nested) {
  const bad = (m) => fail("receipt shape", m);
  if (!isMap(doc) || doc.get("format") !== "rantai-receipt/1") throw bad("not a rantai-receipt/1 file");
  let want = [...FILE_KEYS, doc.has("change") ? "change" : "event"];
  let changes = [];
  if (doc.has("changes") && !nested) {
    const cs = doc.get("changes");
    if (!Array.isArray(cs) || !cs.length) throw bad("changes must be a non-empty list");
    for (const c of cs) changes.push(await receiptFromDoc(c, true));
    want = [...want, "changes"];
  }
  if (!keysAre(doc, want)) throw bad("not exactly the keys of a receipt file");
  const header = doc.get("header"), cert = doc.get("certificate");
  if (!isMap(header) || !isMap(cert) || !Array.isArray(cert.get("votes"))) throw bad("header and certificate must be objects");
  if (!Array.isArray(doc.get("path"))) throw bad("path must be a list");
  const h = new Map(header);
  for (const k of ["chain", "prev_hash", "records_root"]) h.set(k, unhexAs(header.get(k), `header.${k}`, HASH));
  const votes = cert.get("votes").map((v, n) => {
    if (!Array.isArray(v) || v.length !== 2) throw bad(`certificate.votes[${n}] must be [validator id, signature]`);
    return [v[0], unhexAs(v[1], `certificate.votes[${n}]`, SIG)];
  });
  const c = new Map(cert);
  c.set("block_hash", unhexAs(cert.get("block_hash"), "certificate.block_hash", HASH));
  c.set("votes", votes);
  const obj = new Map([
    ["record", unhexAs(doc.get("record"), "record")], ["index", doc.get("index")],
    ["path", doc.get("path").map((p, n) => unhexAs(p, `path[${n}]`, HASH))], ["header", h], ["certificate", c],
  ]);
  const receipt = await receiptFromObj(obj);
  if (doc.get("record_id") !== hex(receipt.record.id)) throw bad("record_id does not match the record's bytes");
  if (doc.get("genesis_hash") !== hex(receipt.header.chain)) throw bad("genesis_hash does not match the header's chain");
  if (doc.has("change") !== receipt.record.isChange) throw bad("a change file for an event, or an event file for a change");
  const [readable, signed] = receipt.record.isChange ? [doc.get("change"), hexify(receipt.record.change)] : [doc.get("event"), receipt.record.event];
  if (!sameValue(readable, signed)) throw fail("receipt event", "the readable event differs from the signed record");
  if (changes.length) receipt.changes = changes.filter((r) => Number(r.header.height) < Number(receipt.header.height));
  return receipt;
}

/** Each step of one receipt's check, in order, so a page can say which one failed. */
export const RECEIPT_STEPS = ["header", "record signature", "Merkle path", "commit certificate"];

/** A receipt proves its record in `c`, the consortium in force at its height (§8). `onStep(name)`
 * is called as each step passes. */
export async function checkReceipt(r, c, onStep = () => {}) {
  if (!equalBytes(r.header.chain, c.hash)) throw Object.assign(fail("wrong chain", "the header belongs to another chain"), { step: "header" });
  onStep("header");
  try { await checkRecord(r.record, c, { schema: false }); } catch (e) { e.step = "record signature"; throw e; }
  onStep("record signature");
  try { await verifyInclusion(r.index, Number(r.header.record_count), r.record.id, r.path, r.header.records_root); }
  catch (e) { e.step = "Merkle path"; throw e; }
  onStep("Merkle path");
  try { await checkCertificate(r.certificate, c, r.header); } catch (e) { e.step = "commit certificate"; throw e; }
  onStep("commit certificate");
}

/** The receipt checked against the genesis, replaying its `changes` first (§11.8). */
export async function verifyReceipt(r, genesis) {
  const gov = r.changes.length ? await replayChanges(genesis, r.changes) : null;
  await checkReceipt(r, gov ? gov.at(Number(r.header.height)) : genesis);
}

/** A GET /v1/head answer (§10.2 "head"). */
export async function checkHead(obj, c) {
  const height = isMap(obj) ? obj.get("height") : undefined;
  if (!isInt(height) || BigInt(height) < 0n) throw fail("head", "a map with a non-negative integer height expected");
  if (BigInt(height) === 0n) {
    if (!equalBytes(obj.get("block_hash"), c.hash) || obj.get("header") != null || obj.get("certificate") != null) {
      throw fail("head", "an empty chain names the genesis hash, no header, no certificate");
    }
    return { height: 0, hash: c.hash, header: null, certificate: null };
  }
  const header = await parseHeader(obj.get("header"));
  if (!equalBytes(header.chain, c.hash)) throw fail("wrong chain", "head: header of another chain");
  if (BigInt(header.height) !== BigInt(height)) throw fail("head", `height ${height} but the header says ${header.height}`);
  if (!equalBytes(obj.get("block_hash"), header.hash)) throw fail("head", "block_hash is not the hash of the header");
  const certificate = parseCertificate(obj.has("certificate") ? obj.get("certificate") : null, height);
  await checkCertificate(certificate, c, header);
  return { height: Number(height), hash: header.hash, header, certificate };
}

// -- governance (§11) -----------------------------------------------------------------------------
const OPS = {
  add_member: { name: "name", organisation: "text", public_key: "key", roles: "roles", proof: "signature" },
  set_roles: { member: "name", roles: "roles" },
  suspend_member: { member: "name" },
  reinstate_member: { member: "name" },
  remove_member: { member: "name" },
  rotate_key: { member: "name", public_key: "key", proof: "signature" },
  add_validator: { name: "name", public_key: "key", url: "url", proof: "signature" },
  remove_validator: { validator: "name" },
  rekey_validator: { validator: "name", public_key: "key", proof: "signature" },
  set_validator_url: { validator: "name", url: "url" },
  set_governance: { approvals: "approvals" },
  set_params: { params: "params" },
  set_read_policy: { read_policy: "read_policy" },
  set_company_prefixes: { member: "name", company_prefixes: "company_prefixes" },
  approve: { proposal: "hash" },
};

function fieldOk(kind, v) {
  switch (kind) {
    case "name": return isStr(v) && NAME.test(v) && !v.endsWith("\n");
    case "text": return isStr(v) && [...v].length > 0 && [...v].length <= 128;
    case "key": return isBytes(v) && v.length === 32;
    case "signature": return isBytes(v) && v.length === 64;
    case "hash": return isBytes(v) && v.length === 32;
    case "url": return isStr(v) && /^https?:\/\//.test(v) && [...v].length <= 256;
    case "roles": return Array.isArray(v) && v.length > 0 && v.every((r) => isStr(r) && ROLES.has(r)) && new Set(v).size === v.length;
    case "approvals": return isStr(v) ? v === "majority" : typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 1000;
    case "read_policy": return isStr(v) && READ_POLICIES.includes(v);
    case "company_prefixes": return prefixesOk(v);
    case "params": return isMap(v) && v.size > 0 && [...v].every(([k, x]) => CHANGEABLE_PARAMS.includes(k) && isInt(x) && BigInt(x) > 0n && BigInt(x) < I63);
    default: return false;
  }
}

export function checkChange(change) {
  const op = isMap(change) ? change.get("op") : undefined;
  if (!isStr(op) || !(op in OPS)) throw fail("change shape", "a map with a known op expected");
  const fields = OPS[op];
  if (!keysAre(change, ["op", ...Object.keys(fields)])) throw fail("change shape", `${op} takes exactly ${Object.keys(fields).join(", ")}`);
  for (const [name, kind] of Object.entries(fields)) if (!fieldOk(kind, change.get(name))) throw fail("change shape", `${name} is not a valid ${kind}`);
}

const refused = (m) => fail("change refused", m);

async function changed(c, change) {
  const op = change.get("op");
  const members = new Map(c.members), retired = new Set(c.retired), validators = [...c.validators];
  const keyIsNew = async (pk) => {
    const id = await keyId(pk);
    if (members.has(id) || c.validatorById(id) || retired.has(id)) throw refused(`key ${id} is already in use`);
  };
  const mem = (name) => { const m = c.memberByName(name); if (!m) throw refused(`no member named ${name}`); return m; };
  const val = (name) => { const v = c.validatorByName(name); if (!v) throw refused(`no validator named ${name}`); return v; };
  if (op === "add_member") {
    if (c.memberByName(change.get("name"))) throw refused(`a member named ${change.get("name")} exists`);
    await keyIsNew(change.get("public_key"));
    const m = await member(change.get("public_key"), change.get("name"), change.get("organisation"), change.get("roles"));
    members.set(m.id, m);
  } else if (["set_roles", "suspend_member", "reinstate_member", "remove_member", "rotate_key", "set_company_prefixes"].includes(op)) {
    const m = mem(change.get("member"));
    if (op === "set_roles") members.set(m.id, { ...m, roles: new Set(change.get("roles")) });
    else if (op === "suspend_member") { if (!m.active) throw refused(`${m.name} is already suspended`); members.set(m.id, { ...m, active: false }); }
    else if (op === "reinstate_member") { if (m.active) throw refused(`${m.name} is not suspended`); members.set(m.id, { ...m, active: true }); }
    else if (op === "remove_member") { members.delete(m.id); retired.add(m.id); }
    else if (op === "set_company_prefixes") {
      const want = change.get("company_prefixes");
      if (want.length === m.companyPrefixes.length && want.every((p, i) => p === m.companyPrefixes[i])) throw refused(`member ${m.name} already has these GS1 Company Prefixes`);
      members.set(m.id, { ...m, companyPrefixes: [...want] });
      const clash = prefixClash(members.values());
      if (clash) throw refused(clash);
    } else {
      await keyIsNew(change.get("public_key"));
      members.delete(m.id); retired.add(m.id);
      const n = await member(change.get("public_key"), m.name, m.organisation, m.roles);
      members.set(n.id, { ...n, active: m.active, companyPrefixes: m.companyPrefixes });
    }
  } else if (op === "add_validator") {
    if (c.validatorByName(change.get("name"))) throw refused(`a validator named ${change.get("name")} exists`);
    await keyIsNew(change.get("public_key"));
    validators.push(await validator(change.get("public_key"), change.get("name"), change.get("url")));
  } else if (["remove_validator", "rekey_validator", "set_validator_url"].includes(op)) {
    const v = val(change.get("validator")), at = validators.indexOf(v);
    if (op === "remove_validator") validators.splice(at, 1);
    else if (op === "rekey_validator") { await keyIsNew(change.get("public_key")); validators[at] = await validator(change.get("public_key"), v.name, v.url); }
    else validators[at] = await validator(v.publicKey, v.name, change.get("url"));
  } else if (op === "set_read_policy") {
    if (change.get("read_policy") === c.readPolicy) throw refused(`the read policy is already ${c.readPolicy}`);
  } else if (op !== "set_governance" && op !== "set_params") {
    throw refused(`unknown op ${op}`);
  }
  let approvals = c.approvals;
  if (op === "set_governance") approvals = change.get("approvals") === "majority" ? null : change.get("approvals");
  let params = c.params;
  if (op === "set_params") { params = { ...c.params }; for (const [k, x] of change.get("params")) params[k] = Number(x); }
  const readPolicy = op === "set_read_policy" ? change.get("read_policy") : c.readPolicy;
  const after = c.copy({ validators, members, approvals, params, retired, readPolicy });
  if (op === "remove_validator" && after.validators.length < 4) throw refused(`it would leave ${after.validators.length} validators; at least 4 are needed`);
  const admins = after.admins().length;
  if (admins === 0) throw refused("it would leave no active admin");
  if (after.approvals !== null && after.approvals > admins) throw refused(`it would need ${after.approvals} approvals with ${admins} active admins`);
  if (after.params.max_record_bytes > after.params.max_block_bytes) throw refused("max_record_bytes above max_block_bytes");
  return after;
}

/** The consortium at every height, replayed from the genesis block by block (§11.6). */
export class Governance {
  constructor(genesis) {
    this.genesis = genesis;
    this.heights = [0];
    this.configs = [genesis];
    this.latest = genesis;
    this.proposals = new Map();
    this.height = 0;
    this.delay = genesis.params.window + 1;
  }
  at(height) {
    let i = 0;
    while (i + 1 < this.heights.length && this.heights[i + 1] <= height) i++;
    return this.configs[i];
  }
  async apply(height, entries) {
    const governing = this.at(height);
    for (const [index, record] of entries) await this.applyEntry(governing, height, index, record);
    this.height = height;
  }
  async applyEntry(governing, height, index, record) {
    const change = record.change;
    checkChange(change);
    const signer = governing.members.get(record.submitter);
    if (!signer || !signer.active || !signer.roles.has("admin")) throw fail("not an admin", `${signer ? signer.name : record.submitter} is not an active admin at height ${height}`);
    let p;
    if (change.get("op") === "approve") {
      p = this.proposals.get(hex(change.get("proposal")));
      if (!p) throw fail("unknown proposal", `no proposal ${hex(change.get("proposal"))} on the chain`);
      if (p.approvedAt !== null) throw fail("proposal closed", `proposal approved at height ${p.approvedAt}`);
      if (p.approvals.includes(signer.name)) throw fail("approved twice", `${signer.name} already approved it`);
    } else {
      if (change.has("proof")) {
        const name = change.get("name") || change.get("member") || change.get("validator");
        const pk = change.get("public_key");
        const body = concat(text(String(name)), new Uint8Array([0]), pk);
        if (!await ed25519Verify(pk, change.get("proof"), signingBytes("possession", this.genesis.hash, body))) {
          throw refused(`the new key's proof of possession does not verify (for ${name})`);
        }
      }
      await changed(this.latest, change);
      p = { id: hex(record.id), height, index, proposer: signer.name, change, approvals: [], entries: [], approvedAt: null, effective: null };
      this.proposals.set(p.id, p);
    }
    p.approvals.push(signer.name);
    p.entries.push([height, index]);
    const admins = new Set(governing.admins().map((m) => m.name));
    if (p.approvals.filter((a) => admins.has(a)).length < governing.approvalsNeeded()) return;
    this.latest = await changed(this.latest, p.change);
    p.approvedAt = height; p.effective = height + this.delay;
    this.latest.since = p.effective;
    if (this.heights[this.heights.length - 1] === p.effective) this.configs[this.configs.length - 1] = this.latest;
    else { this.heights.push(p.effective); this.configs.push(this.latest); }
  }
}

/** The governance state proven by receipts of change entries, each checked against the consortium in
 * force at its own height before it is applied (§11.8). */
export async function replayChanges(genesis, receipts, onReceipt = () => {}) {
  const gov = new Governance(genesis);
  let last = [0, -1], group = [];
  const flush = async () => {
    if (!group.length) return;
    const height = Number(group[0].header.height), c = gov.at(height);
    for (const r of group) { await checkReceipt(r, c); onReceipt(r); }
    await gov.apply(height, group.map((r) => [r.index, r.record]));
    group = [];
  };
  for (const r of receipts) {
    const at = [Number(r.header.height), r.index];
    if (at[0] < last[0] || (at[0] === last[0] && at[1] <= last[1]) || !r.record.isChange) {
      throw fail("change shape", "change entries in chain order expected");
    }
    if (group.length && at[0] !== last[0]) await flush();
    group.push(r); last = at;
  }
  await flush();
  return gov;
}

export { EncodingError, F64, decode, encode, hex, unhex, parseJson };
