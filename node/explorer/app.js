// The explorer page: views of the chain, each line verified here against the pinned genesis.
// A check's mark is "verified" only when verify.js passed it in this browser; otherwise the page
// names the check that failed and the rule (docs/format.md §10) the node's answer broke.
import { ApiError, Api } from "./api.js";
import { hex, isMap, plain } from "./canonical.js";
import * as v from "./verify.js";
import { eventHashId } from "./event_hash.js";
import { describe, identifiers, where } from "./words.js";

const api = new Api();
const PIN = "rantai.explorer.genesis";
const state = { genesis: null, gov: null, govError: null, nodeGenesisHash: null };
const main = document.getElementById("main");

// -- small DOM helpers ----------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, x] of Object.entries(attrs)) {
    if (x === null || x === undefined) continue;
    if (k === "class") e.className = x;
    else if (/^(data|aria)[A-Z]/.test(k)) e.setAttribute(k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), x);
    else if (["role", "href", "title", "scope"].includes(k)) e.setAttribute(k, x);
    else e[k] = x;
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
const short = (h) => `${h.slice(0, 12)}…`;
const time = (ms) => new Date(Number(ms)).toISOString().replace(".000Z", "Z");
const link = (href, label) => el("a", { href }, label);
const recordLink = (id) => link(`#/record/${id}`, el("code", {}, short(id)));

/** One check's mark: data-check names it, data-state is verified / failed / skipped. */
function mark(check, state, detail = "") {
  const label = state === "verified" ? `✓ ${check}: verified` : state === "failed" ? `✗ ${check}: FAILED` : `${check}: not checked`;
  return el("li", { class: `badge ${state === "verified" ? "ok" : state === "failed" ? "bad" : "skipped"}`, dataCheck: check, dataState: state,
    title: detail || null }, label, state === "failed" && detail ? ` — ${detail}` : "");
}

function problem(e) {
  if (e instanceof ApiError && e.status === 401) {
    document.getElementById("settings").open = true;
    const text = api.key
      ? `The node refused this member key (401 ${e.rule}): ${e.message}`
      : "This node shows its ledger to members only: it answered 401 (unsigned request). Load your member key under “Pin another genesis, or load a member key” above (a PEM file; it stays in this browser) and the page will sign its requests.";
    return el("p", { class: "error", role: "alert", dataProblem: "unauthorised" }, text);
  }
  if (e instanceof ApiError) return el("p", { class: "error", role: "alert", dataProblem: e.rule }, `The node answered ${e.status} ${e.rule}: ${e.message}`);
  return el("p", { class: "error", role: "alert", dataProblem: v.ruleOf(e) }, `${e.message}`);
}
function show(...nodes) { main.replaceChildren(...nodes); }

// -- trust: genesis and governance ----------------------------------------------------------------
async function loadGenesis() {
  const status = document.getElementById("genesis-status");
  let text = localStorage.getItem(PIN), source = "pinned in this browser";
  let nodeText = null;
  try { nodeText = new TextDecoder().decode(await api.get("/v1/genesis", { raw: true })); } catch (e) { if (!text) throw e; }
  if (!text) { text = nodeText; source = "fetched from this node once and pinned"; localStorage.setItem(PIN, text); }
  state.genesis = await v.parseGenesis(text);
  const h = hex(state.genesis.hash);
  const lines = [el("span", {}, `${state.genesis.chainId}, ${source}; its hash (compare it with your consortium's, out of band): `),
    el("code", { class: "hash", dataGenesisHash: h }, h)];
  if (nodeText !== null) {
    const nodeHash = hex((await v.parseGenesis(nodeText)).hash);
    state.nodeGenesisHash = nodeHash;
    if (nodeHash !== h) lines.push(el("span", { class: "notice", role: "alert" }, ` This node serves another genesis (${short(nodeHash)}): it is not on the pinned chain, and nothing it shows will verify.`));
  }
  status.replaceChildren(...lines);
}

async function loadGovernance() {
  const status = document.getElementById("governance-status");
  state.gov = null; state.govError = null;
  try {
    const answer = await api.get("/v1/changes");
    const receipts = [];
    for (const r of answer.get("changes")) receipts.push(await v.receiptFromObj(r));
    state.gov = await v.replayChanges(state.genesis, receipts);
    const approved = [...state.gov.proposals.values()].filter((p) => p.approvedAt !== null).length;
    status.replaceChildren(el("ul", { class: "checks" }, mark("governance change chain", "verified",
      `${receipts.length} change entries, ${approved} approved changes`)),
      el("span", { class: "meta" }, ` ${receipts.length} change entries replayed from the genesis (${approved} approved changes): the members and validators used below are the ones they prove.`));
  } catch (e) {
    state.govError = e;
    state.gov = new v.Governance(state.genesis); // the genesis alone: later members will not verify
    if (e instanceof ApiError) throw e;
    status.replaceChildren(el("ul", { class: "checks" }, mark("governance change chain", "failed", `${v.ruleOf(e)}: ${e.message}`)));
  }
}

const consortiumAt = (h) => state.gov.at(h);
function memberName(id, height) {
  const m = consortiumAt(height).members.get(id) || state.gov.latest.members.get(id);
  if (!m) return id;
  return m.organisation && m.organisation !== m.name ? `${m.name} (${m.organisation})` : m.name;
}
function validatorName(id, height) {
  const c = consortiumAt(height);
  const found = c.validatorById(id) || state.gov.latest.validatorById(id);
  return found ? found.name : id;
}

// -- receipts -------------------------------------------------------------------------------------
/** Verify one receipt (wire map) step by step; returns {receipt, marks, failed, rule, error}. */
async function checkReceipt(obj) {
  const done = [];
  let receipt = null;
  try {
    receipt = await v.receiptFromObj(obj);
    await v.checkReceipt(receipt, consortiumAt(Number(receipt.header.height)), (step) => done.push(step));
    return { receipt, marks: v.RECEIPT_STEPS.map((s) => mark(s, "verified")), failed: null };
  } catch (e) {
    if (receipt === null) { // not even a well-formed receipt: no step can be checked
      return { receipt, marks: [mark("well-formed receipt", "failed", `${v.ruleOf(e)}: ${e.detail || e.message}`),
        ...v.RECEIPT_STEPS.map((s) => mark(s, "skipped"))], failed: "well-formed receipt", rule: v.ruleOf(e), error: e };
    }
    const failed = e.step || "header";
    const marks = [];
    let after = false;
    for (const s of v.RECEIPT_STEPS) {
      if (done.includes(s)) marks.push(mark(s, "verified"));
      else if (!after && (s === failed || !v.RECEIPT_STEPS.includes(failed))) { marks.push(mark(s, "failed", `${v.ruleOf(e)}: ${e.detail || e.message}`)); after = true; }
      else marks.push(mark(s, "skipped"));
    }
    return { receipt, marks, failed, rule: v.ruleOf(e), error: e };
  }
}

function eventBlock(record) {
  const body = record.isChange ? record.change : record.event;
  return el("details", {}, el("summary", {}, record.isChange ? "the signed change" : "the signed event (EPCIS 2.0 JSON)"),
    el("pre", {}, JSON.stringify(plain(body), null, 2)));
}

// -- views ----------------------------------------------------------------------------------------
async function viewHome() {
  const head = await api.get("/v1/head");
  const height = Number(head.get("height"));
  const items = [el("h2", {}, "Head")];
  let headHash = null;
  try {
    const h = await v.checkHead(head, consortiumAt(height || 1));
    headHash = h.hash;
    items.push(el("div", {}, el("p", {}, `Height ${height}`, height ? `: block ${hex(h.hash)}` : " (no block yet)"),
      el("ul", { class: "checks" }, mark("head and its commit certificate", "verified"))));
  } catch (e) {
    items.push(el("div", {}, el("p", {}, `Height ${height}`), el("ul", { class: "checks" }, mark("head and its commit certificate", "failed", `${v.ruleOf(e)}: ${e.message}`))));
  }
  items.push(el("h2", {}, "Recent blocks"));
  const rows = [];
  let above = headHash;
  for (let h = height; h >= 1 && h > height - 10; h--) {
    const answer = await api.get(`/v1/blocks/${h}`);
    let block = null;
    const marks = [];
    try {
      block = await v.parseBlock(answer.get("block"));
      const c = consortiumAt(h);
      await v.checkBlock(block, c, { height: h - 1, hash: block.header.prev_hash, timestamp: 0 });
      await v.checkCertificate(v.parseCertificate(answer.get("certificate"), h), c, block.header);
      if (above !== null && hex(above) !== hex(block.header.hash)) throw new v.RuleError("hash link", `block ${h + 1} does not link to this block`);
      marks.push(mark("block", "verified"));
      above = block.header.prev_hash;
    } catch (e) {
      marks.push(mark("block", "failed", `${v.ruleOf(e)}: ${e.message}`));
      above = null;
    }
    const cert = answer.get("certificate");
    const signers = cert ? cert.get("votes").map(([id]) => validatorName(id, h)).join(", ") : "—";
    rows.push(el("tr", { dataHeight: h },
      el("td", { dataLabel: "height" }, link(`#/block/${h}`, String(h))),
      el("td", { dataLabel: "time" }, block ? time(block.header.timestamp) : "?"),
      el("td", { dataLabel: "proposer" }, block ? validatorName(block.header.proposer, h) : "?"),
      el("td", { dataLabel: "records" }, block ? String(block.records.length) : "?"),
      el("td", { dataLabel: "signed by" }, signers),
      el("td", { dataLabel: "check" }, el("ul", { class: "checks" }, marks))));
  }
  items.push(el("table", { class: "wide" }, el("thead", {}, el("tr", {}, ...["height", "time", "proposer", "records", "signed by (commit certificate)", "check"].map((t) => el("th", { scope: "col" }, t)))),
    el("tbody", {}, rows)));
  show(...items);
}

async function viewBlock(h) {
  const answer = await api.get(`/v1/blocks/${h}`);
  const c = consortiumAt(h);
  const items = [el("h2", {}, `Block ${h}`)];
  let block;
  try {
    block = await v.parseBlock(answer.get("block"));
    await v.checkBlock(block, c, { height: h - 1, hash: block.header.prev_hash, timestamp: 0 });
    await v.checkCertificate(v.parseCertificate(answer.get("certificate"), h), c, block.header);
    items.push(el("ul", { class: "checks" }, mark("header, records root and commit certificate", "verified")));
  } catch (e) {
    items.push(el("ul", { class: "checks" }, mark("header, records root and commit certificate", "failed", `${v.ruleOf(e)}: ${e.message}`)));
    if (!block) { show(...items); return; }
  }
  const hd = block.header;
  items.push(el("p", { class: "meta" }, `hash `, el("code", {}, hex(hd.hash)), ` · time ${time(hd.timestamp)} · view ${hd.view} · proposer ${validatorName(hd.proposer, h)} · `,
    h > 1 ? link(`#/block/${h - 1}`, "previous block") : "first block"));
  const rows = [];
  for (const [i, r] of block.records.entries()) {
    let m;
    try { await v.checkRecord(r, c, { schema: false }); m = mark("record signature", "verified"); } catch (e) { m = mark("record signature", "failed", `${v.ruleOf(e)}: ${e.message}`); }
    const what = r.isChange ? `governance change: ${r.change.get("op")}` : describe(plain(r.event));
    rows.push(el("tr", {}, el("td", { dataLabel: "#" }, String(i)), el("td", { dataLabel: "record" }, recordLink(hex(r.id))),
      el("td", { dataLabel: "what" }, what), el("td", { dataLabel: "by" }, memberName(r.submitter, h)), el("td", { dataLabel: "check" }, el("ul", { class: "checks" }, m))));
  }
  items.push(el("table", { class: "wide" }, el("thead", {}, el("tr", {}, ...["#", "record", "what happened", "recorded by", "check"].map((t) => el("th", { scope: "col" }, t)))), el("tbody", {}, rows)));
  show(...items);
}

async function viewReceipt(title, obj, expect = null) {
  const checked = await checkReceipt(obj);
  const items = [el("h2", {}, title)];
  const r = checked.receipt;
  const li = el("article", { class: `step ${checked.failed ? "failed" : ""}`, dataRecord: r ? hex(r.record.id) : "" });
  if (r) {
    const h = Number(r.header.height);
    li.append(el("p", { class: "what" }, r.record.isChange ? `governance change: ${r.record.change.get("op")}` : describe(plain(r.record.event))),
      el("p", { class: "meta" }, `record `, el("code", {}, hex(r.record.id)), ` · block `, link(`#/block/${h}`, String(h)), ` (index ${r.index}) · recorded by ${memberName(r.record.submitter, h)}`,
        r.record.isChange ? "" : ` · ${where(plain(r.record.event)) || "no location"} · event time ${plain(r.record.event).eventTime ?? "?"}`));
  }
  li.append(el("ul", { class: "checks" }, checked.marks));
  if (expect && r && !checked.failed) li.append(await expect(r));
  if (r) li.append(eventBlock(r.record));
  items.push(li);
  show(...items);
}

/** An item's journey: its history, its containers' and its ingredients', in chain order. */
async function viewItem(item) {
  show(el("h2", {}, "Journey of ", el("code", {}, item)), el("p", { role: "status" }, "reading and verifying…"));
  const queue = [item], asked = new Set(), seen = new Map();
  while (queue.length && asked.size < 32) {
    const ident = queue.shift();
    if (asked.has(ident)) continue;
    asked.add(ident);
    // the history comes in pages pinned to one height (node/history.py): follow `next` to the last one
    const receipts = [];
    for (let page = null, first = true; first || page; first = false) {
      const answer = await api.get(`/v1/items/${encodeURIComponent(ident)}/history` + (page ? `?page=${encodeURIComponent(page)}` : ""));
      receipts.push(...answer.get("receipts"));
      page = answer.get("next") ?? null;
    }
    for (const obj of receipts) {
      const checked = await checkReceipt(obj);
      const r = checked.receipt;
      const key = r ? hex(r.record.id) : `unreadable-${seen.size}`;
      if (r && !checked.failed && !identifiers(plain(r.record.event)).includes(ident)) {
        checked.marks.push(mark("names the item", "failed", `the node listed a record whose event does not name ${ident}`));
        checked.failed = "names the item";
      }
      if (!seen.has(key)) seen.set(key, checked);
      if (!r || checked.failed) continue;
      const ev = plain(r.record.event);
      if (ev.type === "AggregationEvent" && (ev.childEPCs || []).includes(ident) && typeof ev.parentID === "string") queue.push(ev.parentID);
      if (ev.type === "TransformationEvent" && (ev.outputEPCList || []).includes(ident)) queue.push(...(ev.inputEPCList || []));
    }
  }
  const steps = [...seen.values()].sort((a, b) => (a.receipt && b.receipt
    ? Number(a.receipt.header.height) - Number(b.receipt.header.height) || a.receipt.index - b.receipt.index : 0));
  const list = el("ol", { class: "timeline", ariaLabel: `journey of ${item}` });
  for (const s of steps) {
    const r = s.receipt;
    const li = el("li", { class: `step ${s.failed ? "failed" : ""}`, dataRecord: r ? hex(r.record.id) : "", dataFailed: s.failed || null });
    if (r) {
      const ev = plain(r.record.event), h = Number(r.header.height);
      li.append(el("p", { class: "what" }, describe(ev, item)),
        el("p", { class: "meta" }, `${ev.eventTime ?? "?"} · ${where(ev) || "no location"} · recorded by ${memberName(r.record.submitter, h)} · block `, link(`#/block/${h}`, String(h)), " · ", recordLink(hex(r.record.id))));
    } else {
      li.append(el("p", { class: "what" }, "an answer that is not a receipt"));
    }
    li.append(el("ul", { class: "checks" }, s.marks));
    if (s.failed) li.append(el("p", { class: "error", role: "alert" }, `This step did not verify: the ${s.failed} check failed (${s.rule || "names the item"}). The node's answer cannot be trusted for it.`));
    list.append(li);
  }
  const failed = steps.filter((s) => s.failed).length;
  const summary = steps.length === 0 ? `No committed record names ${item}.`
    : failed ? `${failed} of ${steps.length} steps did NOT verify.` : `All ${steps.length} steps verified against the genesis.`;
  show(el("h2", {}, "Journey of ", el("code", {}, item)),
    el("p", { role: "status", dataSummary: failed ? "failed" : "verified" }, summary,
      asked.size > 1 ? ` Includes the history of ${[...asked].filter((x) => x !== item).join(", ")} (its containers and ingredients).` : ""),
    list);
}

async function viewEvent(id) {
  const obj = await api.get(`/v1/events/${encodeURIComponent(id)}`);
  await viewReceipt("Event", obj, (r) => {
    const ev = plain(r.record.event);
    if (id.startsWith("ni:")) {
      return eventHashId(r.record.event).then((mine) => el("ul", { class: "checks" }, mine === id.replace("%3F", "?").replace("%3f", "?")
        ? mark("event hash ID", "verified") : mark("event hash ID", "failed", `the record's event has the hash ID ${mine}`)));
    }
    return el("ul", { class: "checks" }, ev.eventID === id ? mark("event ID", "verified") : mark("event ID", "failed", `the record's eventID is ${ev.eventID}, not ${id}`));
  });
}

async function viewConfig() {
  const head = Number((await api.get("/v1/head")).get("height"));
  const c = consortiumAt(head + 1);
  const items = [el("h2", {}, `Configuration in force for block ${head + 1}`),
    el("p", { class: "meta" }, state.govError ? "The change chain did not verify: shown is the genesis configuration." : `Replayed from the genesis and ${state.gov.proposals.size} verified proposals (in force since block ${c.since}).`),
    el("h3", {}, "Members"),
    el("table", { class: "wide" }, el("thead", {}, el("tr", {}, ...["name", "organisation", "roles", "status", "id"].map((t) => el("th", { scope: "col" }, t)))),
      el("tbody", {}, [...c.members.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map((m) => el("tr", { dataMember: m.name },
        el("td", { dataLabel: "name" }, m.name), el("td", { dataLabel: "organisation" }, m.organisation), el("td", { dataLabel: "roles" }, [...m.roles].sort().join(", ")),
        el("td", { dataLabel: "status" }, m.active ? "active" : "suspended"), el("td", { dataLabel: "id" }, el("code", {}, m.id)))))),
    el("h3", {}, "Validators"),
    el("table", { class: "wide" }, el("thead", {}, el("tr", {}, ...["#", "name", "id", "url"].map((t) => el("th", { scope: "col" }, t)))),
      el("tbody", {}, c.validators.map((x, i) => el("tr", {}, el("td", { dataLabel: "#" }, String(i)), el("td", { dataLabel: "name" }, x.name),
        el("td", { dataLabel: "id" }, el("code", {}, x.id)), el("td", { dataLabel: "url" }, x.url))))),
    el("p", {}, `Governance: ${c.approvals === null ? "a majority" : c.approvals} of the active admins (${c.approvalsNeeded()} needed): ${c.admins().map((m) => m.name).join(", ")}.`)];
  try {
    const node = await api.get("/v1/config", { msgpack: false });
    const mine = { members: [...c.members.values()].map((m) => [m.name, m.id, [...m.roles].sort().join(","), m.active]).sort(), validators: c.validators.map((x) => [x.name, x.id]) };
    const theirs = { members: node.members.map((m) => [m.name, m.id, [...m.roles].sort().join(","), m.active]).sort(), validators: node.validators.map((x) => [x.name, x.id]) };
    const same = JSON.stringify(mine) === JSON.stringify(theirs);
    items.push(el("ul", { class: "checks" }, same ? mark("node's /v1/config agrees with the verified change chain", "verified")
      : mark("node's /v1/config agrees with the verified change chain", "failed", "the node reports other members or validators than its change entries prove")));
    items.push(el("h3", {}, "Proposals (as the node reports them)"),
      node.proposals.length ? el("ul", {}, node.proposals.map((p) => el("li", {}, `${p.change.op} by ${p.proposer} at block ${p.height}: ${p.status}`,
        p.status === "approved" ? ` at ${p.approved_at}, in force from ${p.effective}` : ` (approvals: ${p.approvals.join(", ")})`))) : el("p", {}, "none"));
  } catch (e) { items.push(problem(e)); }
  show(...items);
}

/** A receipt file (rantai-receipt/1, what `rantai submit --receipt` writes) checked here, offline: the
 * pinned genesis and the change entries the file carries, nothing from the node. */
function viewReceiptFile() {
  const input = el("input", { type: "file", id: "receipt-file", accept: ".json,application/json" });
  const out = el("div", { id: "receipt-result", role: "status" });
  input.addEventListener("change", async () => {
    const file = input.files[0];
    if (!file) return;
    const marks = [];
    let receipt = null;
    try {
      receipt = await v.receiptFromJson(await file.text());
      marks.push(mark("receipt file", "verified"));
      if (receipt.changes.length) {
        await v.replayChanges(state.genesis, receipt.changes);
        marks.push(mark("governance change chain", "verified", `${receipt.changes.length} change entries carried by the file`));
      }
      await v.verifyReceipt(receipt, state.genesis);
      marks.push(mark("record, Merkle path and commit certificate", "verified"));
    } catch (e) {
      marks.push(mark(receipt ? "record, Merkle path and commit certificate" : "receipt file", "failed", `${v.ruleOf(e)}: ${e.detail || e.message}`));
    }
    const what = receipt && !receipt.record.isChange ? describe(plain(receipt.record.event)) : receipt ? "governance change" : "";
    out.replaceChildren(el("p", { class: "what" }, what), el("ul", { class: "checks" }, marks),
      receipt ? el("p", { class: "meta" }, "record ", el("code", {}, hex(receipt.record.id)), ` · block ${receipt.header.height}`) : "");
  });
  show(el("h2", {}, "Verify a receipt file"),
    el("p", {}, "A receipt file proves one record with nothing but the genesis. It is read and checked in this page; nothing is sent to the node."),
    el("label", { class: "file" }, "Receipt file (JSON)… ", input), out);
}

// -- routing --------------------------------------------------------------------------------------
async function route() {
  const hash = decodeURIComponent(location.hash.slice(1) || "/");
  const [, view, ...rest] = hash.split("/");
  const arg = rest.join("/");
  try {
    if (!state.genesis) await start();
    if (!state.genesis) return;
    if (view === "block") await viewBlock(Number(arg));
    else if (view === "record") await viewReceipt("Record", await api.get(`/v1/records/${arg}`));
    else if (view === "item") await viewItem(arg);
    else if (view === "event") await viewEvent(arg);
    else if (view === "config") await viewConfig();
    else if (view === "receipt") viewReceiptFile();
    else await viewHome();
  } catch (e) {
    show(problem(e));
  }
  document.body.dataset.ready = "true";
  if (view) main.focus({ preventScroll: true }); // a screen reader starts at the new view
}

function search(q) {
  q = q.trim();
  if (!q) return;
  if (/^[0-9a-f]{64}$/.test(q)) location.hash = `#/record/${q}`;
  else if (/^\d+$/.test(q)) location.hash = `#/block/${q}`;
  else if (q.startsWith("ni:") || q.startsWith("urn:uuid:")) location.hash = `#/event/${encodeURIComponent(q)}`;
  else location.hash = `#/item/${encodeURIComponent(q)}`;
}

async function start() {
  document.body.dataset.ready = "false";
  try {
    await loadGenesis();
    await loadGovernance();
  } catch (e) {
    state.genesis = null;
    document.getElementById("genesis-status").replaceChildren(e instanceof ApiError ? "not loaded" : `not usable: ${e.message}`);
    show(problem(e));
    document.body.dataset.ready = "true";
  }
}

function wire() {
  document.getElementById("search").addEventListener("submit", (e) => { e.preventDefault(); search(document.getElementById("q").value); });
  document.getElementById("genesis-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    const text = await file.text();
    try { await v.parseGenesis(text); } catch (err) { document.getElementById("genesis-status").textContent = `That file is not a usable genesis: ${err.message}`; return; }
    localStorage.setItem(PIN, text);
    state.genesis = null;
    route();
  });
  document.getElementById("genesis-forget").addEventListener("click", () => { localStorage.removeItem(PIN); state.genesis = null; route(); });
  document.getElementById("key-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    const status = document.getElementById("key-status");
    if (!file) return;
    let pub;
    try { pub = await api.loadKey(await file.text()); } catch (err) { status.textContent = `That key was not loaded: ${err.message}`; return; }
    e.target.value = "";
    state.genesis = null;
    await route(); // the genesis and the change chain too may need a signed read
    const who = state.gov ? [...state.gov.latest.members.values()].find((m) => hex(m.publicKey) === pub) : null;
    status.replaceChildren("requests are signed with the key of ", el("strong", {}, who ? who.name : "a key that is not a member of the verified configuration"), " (", el("code", {}, short(pub)), ").");
  });
  document.getElementById("key-forget").addEventListener("click", () => { api.forgetKey(); document.getElementById("key-status").textContent = "none loaded: requests are anonymous."; });
  window.addEventListener("hashchange", route);
}

if (!window.isSecureContext || !crypto.subtle) {
  main.replaceChildren(el("p", { class: "error", role: "alert" }, "This browser offers no WebCrypto here (it needs a secure context: https://, or http://127.0.0.1 / localhost). Open the page over https or through an SSH tunnel to localhost."));
} else {
  wire();
  route();
}
