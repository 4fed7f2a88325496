// The CBV 2.0 event hash ID (ni:///sha-256;<hex>?ver=CBV2.0), ported from client/format/epcis/event_hash.py
// (docs/epcis.md §2 states the algorithm), over canonical values (canonical.js: Maps, F64, BigInt).
// tests/explorer/test_event_hash_browser.py compares this port's pre-hash strings with the Python's on the
// demo's, the vectors' and the GS1 examples' events. The ledger's `duplicate event` rule keys on it.
import { F64, concat, hex, isInt, isMap, sha256, text } from "./canonical.js";
import { TERMS } from "./vocabulary.js";

export class Unhashable extends Error {}

const CBV = "https://ref.gs1.org/cbv/", GS1_VOC = "https://gs1.org/voc/";
const DEFAULT_PREFIXES = {
  epcis: "https://ref.gs1.org/epcis/", cbv: "https://ref.gs1.org/cbv/", cbvmda: "urn:epcglobal:cbv:mda:",
  gs1: "https://gs1.org/voc/", rdfs: "http://www.w3.org/2000/01/rdf-schema#", xsd: "http://www.w3.org/2001/XMLSchema#",
  dcterms: "http://purl.org/dc/terms/", owl: "http://www.w3.org/2002/07/owl#",
};
const EXCLUDED = new Set(["type", "eventID", "recordTime", "errorDeclaration", "@context", "rdfs:comment", "comment"]);

/** Python's str ordering: by code points (JS compares UTF-16 units). */
function cmp(a, b) {
  const x = [...a], y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}
const sortStr = (xs) => xs.sort(cmp);
const isStr = (v) => typeof v === "string";
// Python's str.strip() strips Unicode whitespace; JS trim() strips the same set for the cases that occur
const strip = (s) => s.trim();
const isDigits = (s) => /^[0-9]+$/.test(s);

// -- values ---------------------------------------------------------------------------------------
const TIME = /^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?\s*(?:([Zz])|([+-])(\d\d):?(\d\d))?$/;

export function normaliseTimestamp(value) {
  const s = strip(value);
  const m = TIME.exec(s);
  if (!m) return s;
  const [, y, mo, d, h, mi, sec, frac, , sign, oh, om] = m;
  const Y = +y, M = +mo, D = +d, H = +h, MI = +mi, S = sec === undefined ? 0 : +sec;
  const days = new Date(Date.UTC(2000, M, 0)).getUTCDate(); // days in month M (leap years fixed below)
  const leap = (Y % 4 === 0 && Y % 100 !== 0) || Y % 400 === 0;
  const dim = M === 2 ? (leap ? 29 : 28) : days;
  if (Y < 1 || M < 1 || M > 12 || D < 1 || D > dim || H > 23 || MI > 59 || S > 59) return s;
  let offset = 0;
  if (sign !== undefined) {
    offset = (+oh * 60 + +om) * (sign === "-" ? -1 : 1);
    if (Math.abs(offset) >= 1440) throw new Unhashable("a time zone offset of a day or more"); // Python raises too
  }
  const digits = (frac || "") + "0000";
  const ms = +digits.slice(0, 3) + (digits[3] >= "5" ? 1 : 0);
  const base = new Date(0);
  base.setUTCFullYear(Y, M - 1, D);
  base.setUTCHours(H, MI, S, 0);
  const t = new Date(base.getTime() - offset * 60000 + ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}T${pad(t.getUTCHours())}:${pad(t.getUTCMinutes())}:${pad(t.getUTCSeconds())}.${pad(t.getUTCMilliseconds(), 3)}Z`;
}

/** A float's shortest round-trip digits in plain notation (Python: format(Decimal(repr(x)), "f")). */
function plainFloat(x) {
  let s = String(x);
  const m = /^(-?)(\d+)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (m) {
    const [, neg, int, frac = "", e] = m;
    const digits = int + frac, exp = +e, point = int.length + exp;
    if (point <= 0) s = `${neg}0.${"0".repeat(-point)}${digits}`;
    else if (point >= digits.length) s = `${neg}${digits}${"0".repeat(point - digits.length)}`;
    else s = `${neg}${digits.slice(0, point)}.${digits.slice(point)}`;
  }
  return s;
}

export function normaliseNumber(v) {
  if (v === true) return "true";
  if (v === false) return "false";
  if (isInt(v)) return String(v);
  let t = plainFloat(v instanceof F64 ? v.value : v);
  if (t.includes(".")) t = t.replace(/0+$/, "").replace(/\.$/, "");
  return t === "-0" || t === "" ? "0" : t;
}

// -- GS1 identifiers ------------------------------------------------------------------------------
function cd(digits) {
  if (!isDigits(digits)) throw new Unhashable("digits");
  let total = 0;
  [...digits].reverse().forEach((ch, i) => { total += +ch * (i % 2 === 0 ? 3 : 1); });
  return String((10 - (total % 10)) % 10);
}

/** Python's urllib.parse.unquote: %XX runs decoded as UTF-8 (invalid bytes replaced), the rest kept. */
function unquote(s) {
  if (!s.includes("%")) return s;
  return s.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
    const bytes = Uint8Array.from(run.slice(1).split("%"), (h) => parseInt(h, 16));
    return new TextDecoder("utf-8").decode(bytes);
  });
}
/** Python's urllib.parse.quote(s, safe="'"): all but RFC 3986 unreserved characters and ' escaped. */
function quote(s) {
  return encodeURIComponent(s).replace(/[!()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
const seg = (t) => quote(unquote(t));
const indicatorFirst = (cp, ref) => ref.slice(0, 1) + cp + ref.slice(1);
function partition(s, sep) { const i = s.indexOf(sep); return i < 0 ? [s, "", ""] : [s.slice(0, i), sep, s.slice(i + sep.length)]; }

export function epcToDigitalLink(uri) {
  if (!uri.startsWith("urn:epc:")) return null;
  const [kind, , rest] = partition(uri.slice(8), ":");
  const [scheme, , body] = partition(rest, ":");
  const p = body.split(".");
  const base = "https://id.gs1.org/";
  try {
    if (kind === "id") {
      if (scheme === "sgtin" && p.length === 3) { const g = indicatorFirst(p[0], p[1]); return `${base}01/${g}${cd(g)}/21/${seg(p[2])}`; }
      if (scheme === "sscc" && p.length === 2) { const s = indicatorFirst(p[0], p[1]); return `${base}00/${s}${cd(s)}`; }
      if (scheme === "sgln" && p.length === 3) { const g = p[0] + p[1]; return `${base}414/${g}${cd(g)}${p[2] === "0" ? "" : `/254/${seg(p[2])}`}`; }
      if (scheme === "pgln" && p.length === 2) { const g = p[0] + p[1]; return `${base}417/${g}${cd(g)}`; }
      if (scheme === "grai" && p.length === 3) { const g = "0" + p[0] + p[1]; return `${base}8003/${g}${cd(g)}${seg(p[2])}`; }
      if (scheme === "giai" && p.length >= 2) return `${base}8004/${p[0]}${seg(p.slice(1).join("."))}`;
      if ((scheme === "gsrn" || scheme === "gsrnp") && p.length === 2) { const g = p[0] + p[1]; return `${base}${scheme === "gsrn" ? "8018" : "8017"}/${g}${cd(g)}`; }
      if (scheme === "gdti" && p.length === 3) { const g = p[0] + p[1]; return `${base}253/${g}${cd(g)}${seg(p[2])}`; }
      if (scheme === "sgcn" && p.length === 3) { const g = p[0] + p[1]; return `${base}255/${g}${cd(g)}${p[2]}`; }
      if (scheme === "ginc" && p.length >= 2) return `${base}401/${p[0]}${seg(p.slice(1).join("."))}`;
      if (scheme === "gsin" && p.length === 2) { const g = p[0] + p[1]; return `${base}402/${g}${cd(g)}`; }
      if (scheme === "cpi" && p.length === 3) return `${base}8010/${p[0]}${seg(p[1])}/8011/${p[2]}`;
      if (scheme === "itip" && p.length === 5) { const g = indicatorFirst(p[0], p[1]); return `${base}8006/${g}${cd(g)}${p[2]}${p[3]}/21/${seg(p[4])}`; }
      if (scheme === "upui" && p.length === 3) { const g = indicatorFirst(p[0], p[1]); return `${base}01/${g}${cd(g)}/235/${seg(p[2])}`; }
    } else if (kind === "class" && scheme === "lgtin" && p.length === 3) {
      const g = indicatorFirst(p[0], p[1]); return `${base}01/${g}${cd(g)}/10/${seg(p[2])}`;
    } else if (kind === "idpat" && scheme === "sgtin" && p.length === 3 && p[1] !== "*") {
      const g = indicatorFirst(p[0], p[1]); return `${base}01/${g}${cd(g)}`;
    }
  } catch (e) {
    if (e instanceof Unhashable) return null;
    throw e;
  }
  return null;
}

const DL_KEEP = { "00": [], "01": ["21", "235", "10"], 253: [], 255: [], 401: [], 402: [], 414: ["254"], 417: [], 8003: [], 8004: [], 8006: ["21", "10"], 8010: ["8011"], 8017: [], 8018: [] };
const DL_ALPHA = { sscc: "00", gtin: "01", gdti: "253", gcn: "255", ginc: "401", gsin: "402", gln: "414", party: "417", grai: "8003", giai: "8004", itip: "8006", cpid: "8010", gsrnp: "8017", gsrn: "8018", ser: "21", lot: "10", glnx: "254", cpsn: "8011" };
const DL = /^https?:\/\/[^/?#]+((?:\/[^/?#]*)*)(?:\?[^#]*)?(?:#[\s\S]*)?$/;
const DL_NUMERIC_LEN = { "00": 18, "01": 14, 402: 17, 414: 13, 417: 13, 8017: 18, 8018: 18 };

function digitalLink(uri) {
  const m = DL.exec(uri);
  if (!m) return null;
  const segs = m[1].split("/").slice(1).map((x) => (Object.hasOwn(DL_ALPHA, x) ? DL_ALPHA[x] : x));
  for (let i = 0; i < segs.length - 1; i++) {
    const ai = segs[i];
    if (!Object.hasOwn(DL_KEEP, ai)) continue;
    let value = unquote(segs[i + 1]);
    const n = DL_NUMERIC_LEN[ai];
    if (n !== undefined) {
      if (!isDigits(value) || value.length > n) return null;
      value = value.padStart(n, "0");
    } else if (["253", "255", "8003", "8006"].includes(ai) && !isDigits(value.slice(0, 13))) {
      return null;
    }
    const quals = {};
    for (let j = i + 2; j < segs.length - 1; j += 2) quals[segs[j]] = unquote(segs[j + 1]);
    let out = `https://id.gs1.org/${ai}/${seg(value)}`;
    for (const q of DL_KEEP[ai]) if (Object.hasOwn(quals, q)) { out += `/${q}/${seg(quals[q])}`; break; }
    return out;
  }
  return null;
}

export function normaliseIdentifier(v) {
  if (v.startsWith("urn:epc:")) return epcToDigitalLink(v) || v;
  if (v.startsWith("http")) return digitalLink(v) || v;
  return v;
}

// -- vocabularies and context -----------------------------------------------------------------------
const URN_CBV = [["urn:epcglobal:cbv:bizstep:", CBV + "BizStep-"], ["urn:epcglobal:cbv:disp:", CBV + "Disp-"],
  ["urn:epcglobal:cbv:btt:", CBV + "BTT-"], ["urn:epcglobal:cbv:sdt:", CBV + "SDT-"], ["urn:epcglobal:cbv:er:", CBV + "ER-"],
  ["http://ns.gs1.org/cbv/", CBV], ["https://ns.gs1.org/cbv/", CBV]];
const BARE = { bizStep: CBV + "BizStep-", disposition: CBV + "Disp-", set: CBV + "Disp-", unset: CBV + "Disp-",
  bizTransactionType: CBV + "BTT-", sourceDestType: CBV + "SDT-", component: CBV + "Comp-", measurementType: GS1_VOC, exception: GS1_VOC };

const SAME_TERMS = { set: "disposition", unset: "disposition" }; // persistentDisposition's lists are dispositions

class Ctx {
  constructor(contexts) {
    this.prefixes = { ...DEFAULT_PREFIXES };
    for (const c of contexts) if (c !== null && c !== undefined) this.add(c);
  }
  add(c) {
    if (Array.isArray(c)) { for (const x of c) this.add(x); return; }
    if (isMap(c)) {
      for (let [k, v] of c) {
        if (isMap(v)) v = v.has("@id") ? v.get("@id") : undefined;
        if (isStr(k) && isStr(v) && !k.startsWith("@")) this.prefixes[k] = v;
      }
    }
  }
  expand(term) {
    const [prefix, sep, rest] = partition(term, ":");
    if (sep && !rest.startsWith("//") && Object.hasOwn(this.prefixes, prefix)) return this.prefixes[prefix] + rest;
    return term;
  }
  key(key) {
    const [prefix, sep, rest] = partition(key, ":");
    if (sep && !rest.startsWith("//")) {
      if (Object.hasOwn(this.prefixes, prefix)) return `{${this.prefixes[prefix]}}${rest}`;
      return `{${prefix}:}${rest}`;
    }
    const cut = Math.max(key.lastIndexOf("/"), key.lastIndexOf("#"));
    if (sep && cut > 0) return `{${key.slice(0, cut + 1)}}${key.slice(cut + 1)}`;
    return key;
  }
}

function value(v, ctx, vocab = null) {
  if (!isStr(v)) {
    if (v === null || v === undefined) return "";
    if (isInt(v) || v instanceof F64 || typeof v === "boolean") return normaliseNumber(v);
    throw new Unhashable("a map or list where the hash expects a value (Python would write its repr)");
  }
  const s = strip(v);
  if (!s) return s;
  if (vocab !== null && !s.includes(":")) return TERMS[SAME_TERMS[vocab] || vocab].has(s) ? BARE[vocab] + s : s;
  for (const [old, neu] of URN_CBV) if (s.startsWith(old)) return neu + s.slice(old.length);
  return normaliseIdentifier(ctx.expand(s));
}
function pair(key, v, ctx, vocab = null) {
  const t = value(v, ctx, vocab);
  return t ? `${key}=${t}` : "";
}

// -- structure ------------------------------------------------------------------------------------
const QTY = ["epcClass", "quantity", "uom"];
const SENSOR_METADATA = ["time", "startTime", "endTime", "deviceID", "deviceMetadata", "rawData", "dataProcessingMethod", "bizRules"];
const SENSOR_REPORT = ["type", "exception", "deviceID", "deviceMetadata", "rawData", "dataProcessingMethod", "time",
  "microorganism", "chemicalSubstance", "value", "component", "stringValue", "booleanValue", "hexBinaryValue", "uriValue",
  "minValue", "maxValue", "meanValue", "sDev", "percRank", "percValue", "uom", "coordinateReferenceSystem", "bizRules"];
const TIME_FIELDS = new Set(["time", "startTime", "endTime"]);
const SENSOR_VOCAB = { type: "measurementType", exception: "exception", component: "component" };
export const PROPERTY_ORDER = ["eventTime", "eventTimeZoneOffset", "certificationInfo", "epcList", "parentID", "inputEPCList",
  "childEPCs", "quantityList", "childQuantityList", "inputQuantityList", "outputEPCList", "outputQuantityList", "action",
  "transformationID", "bizStep", "disposition", "persistentDisposition", "readPoint", "bizLocation", "bizTransactionList",
  "sourceList", "destinationList", "sensorElementList", "ilmd"];
const KNOWN = new Set([...PROPERTY_ORDER, ...EXCLUDED]);
const asList = (v) => (Array.isArray(v) ? v : [v]);

function ext(key, v, ctx) {
  const name = ctx.key(key);
  return asList(v).map((item) => {
    if (isMap(item)) return name + exts(item, ctx);
    const t = value(item, ctx);
    return t ? `${name}=${t}` : name;
  });
}
function exts(obj, ctx, skip = []) {
  const parts = [];
  for (const [k, v] of obj) {
    if (skip.includes(k) || k === "@context" || k === "rdfs:comment" || k === "comment" || k.startsWith("@xmlns")) continue;
    if (k === "#text") { const t = value(v, ctx); if (t) parts.push("=" + t); continue; }
    parts.push(...ext(k, v, ctx));
  }
  return sortStr(parts).join("");
}
function fields(obj, order, ctx, vocab = null) {
  const out = [];
  for (const f of order) {
    if (!obj.has(f)) continue;
    const v = obj.get(f);
    if (TIME_FIELDS.has(f) && isStr(v)) out.push(`${f}=${normaliseTimestamp(v)}`);
    else if (f === "hexBinaryValue" && isStr(v)) out.push(`${f}=${strip(v).toUpperCase()}`);
    else out.push(pair(f, v, ctx, vocab && Object.hasOwn(vocab, f) ? vocab[f] : null));
  }
  return out.join("") + exts(obj, ctx, order);
}
const sortedJoin = (items) => sortStr(items.filter((i) => i)).join("");

function render(field, v, ctx) {
  if (field === "eventTime") return isStr(v) ? `${field}=${normaliseTimestamp(v)}` : pair(field, v, ctx);
  if (["epcList", "inputEPCList", "childEPCs", "outputEPCList"].includes(field)) {
    const body = sortedJoin(asList(v).map((x) => pair("epc", x, ctx)));
    return body ? field + body : "";
  }
  if (field === "certificationInfo") return sortedJoin(asList(v).map((x) => pair(field, x, ctx)));
  if (field.endsWith("QuantityList") || field === "quantityList") {
    const body = sortedJoin(asList(v).filter(isMap).map((q) => "quantityElement" + fields(q, QTY, ctx)));
    return body ? field + body : "";
  }
  if (field === "bizStep" || field === "disposition") return pair(field, v, ctx, field);
  if (field === "persistentDisposition") {
    if (!isMap(v)) return "";
    const body = ["set", "unset"].filter((k) => v.has(k)).map((k) => sortedJoin(asList(v.get(k)).map((x) => pair(k, x, ctx, k)))).join("");
    return body ? field + body : "";
  }
  if (field === "readPoint" || field === "bizLocation") {
    const body = isMap(v) ? fields(v, ["id"], ctx) : pair("id", v, ctx);
    return body ? field + body : "";
  }
  if (["bizTransactionList", "sourceList", "destinationList"].includes(field)) {
    const valueKey = { bizTransactionList: "bizTransaction", sourceList: "source", destinationList: "destination" }[field];
    const vocab = valueKey === "bizTransaction" ? "bizTransactionType" : "sourceDestType";
    const body = sortedJoin(asList(v).filter(isMap).map((x) => pair("type", x.has("type") ? x.get("type") : null, ctx, vocab)
      + pair(valueKey, x.has(valueKey) ? x.get(valueKey) : null, ctx)));
    return body ? field + body : "";
  }
  if (field === "sensorElementList") {
    const elements = [];
    for (const el of asList(v)) {
      if (!isMap(el)) continue;
      let s = "sensorElement";
      const md = el.get("sensorMetadata");
      if (isMap(md)) { const body = fields(md, SENSOR_METADATA, ctx); s += body ? "sensorMetadata" + body : ""; }
      const reports = asList(el.has("sensorReport") ? el.get("sensorReport") : []).filter(isMap)
        .map((r) => "sensorReport" + fields(r, SENSOR_REPORT, ctx, SENSOR_VOCAB));
      s += sortedJoin(reports);
      s += exts(el, ctx, ["sensorMetadata", "sensorReport"]);
      elements.push(s);
    }
    const body = sortedJoin(elements);
    return body ? field + body : "";
  }
  if (field === "ilmd") { const body = isMap(v) ? exts(v, ctx) : ""; return body ? field + body : ""; }
  return pair(field, v, ctx);
}

/** The canonical pre-hash string of an EPCIS event (a canonical Map). */
export function eventPrehash(event) {
  const ctx = new Ctx([event.get("@context")]);
  const type = event.has("type") ? event.get("type") : "";
  const out = ["eventType=" + strip(isStr(type) ? type : String(type))];
  for (const f of PROPERTY_ORDER) if (event.has(f)) out.push(render(f, event.get(f), ctx));
  out.push(exts(event, ctx, [...KNOWN]));
  return out.join("");
}

export const eventDigest = async (event) => sha256(text(eventPrehash(event)));
export const hashIdOf = (digest) => `ni:///sha-256;${hex(digest)}?ver=CBV2.0`;
export const eventHashId = async (event) => hashIdOf(await eventDigest(event));

/** The ledger's `duplicate event` key: the digest, or for an error declaration SHA-256("errorDeclaration" ‖ 0 ‖ digest). */
export async function uniquenessDigest(event) {
  const digest = await eventDigest(event);
  return event.has("errorDeclaration") ? sha256(concat(text("errorDeclaration\u0000"), digest)) : digest;
}
