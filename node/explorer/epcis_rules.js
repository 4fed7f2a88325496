// rantai's EPCIS 2.0 rules (the `schema` rule of docs/format.md §10), ported from
// client/format/epcis/validate.py's validate_event rule by rule, with its error paths and reasons:
// a record that breaks one fails `schema: <path>: <reason>` here as it does in the reference.
// tests/explorer/test_epcis_rules_browser.py checks the two agree, verdict for verdict, on GS1's
// examples, the project's events and thousands of mutations of them.
//
// Values are the explorer's (canonical.js): objects are Maps, integers Numbers or BigInts, floats F64.
// Where the reference leans on Python, the behaviour is reproduced: lengths count code points,
// date-times are judged as datetime.fromisoformat judges them, and values in messages are spelled as
// Python's repr() spells them. Digits are ASCII digits on both sides (validate.py's patterns are re.ASCII).
import { F64, isInt, isMap } from "./canonical.js";
import { TERMS } from "./vocabulary.js";

export const MAX_LIST_ITEMS = 10_000;
export const MAX_URI_LENGTH = 2_048;
export const MAX_TEXT_LENGTH = 8_192;
export const MAX_DEPTH = 16; // nesting depth of extension / ILMD values
export const MAX_KEYS = 1_000; // keys in one extension object

/** An event broke a rule: `rule` is "schema", the message "schema: <path>: <reason>" (EventInvalid). */
export class EventInvalid extends Error {
  constructor(path, reason) {
    super(`schema: ${path}: ${reason}`);
    this.rule = "schema"; this.path = path; this.reason = reason; this.detail = `${path}: ${reason}`;
  }
}

// A rule broke; the path is assembled while the error unwinds (each container adds its key).
class Err { constructor(msg, ...parts) { this.msg = msg; this.parts = parts; } }
const bad = (msg, ...parts) => { throw new Err(msg, ...parts); };
/** Run `f`, adding `part` to the path of a rule it breaks. */
function at(part, f) {
  try { f(); } catch (e) { if (e instanceof Err) e.parts.push(part); throw e; }
}

// -- Python's view of values --------------------------------------------------------------------
const isStr = (v) => typeof v === "string";
const isFloat = (v) => v instanceof F64 || (typeof v === "number" && !Number.isInteger(v));
const floatOf = (v) => (v instanceof F64 ? v.value : v);
/** len() of a Python str: code points, not UTF-16 units. */
function len(s) {
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) { const d = s.charCodeAt(i + 1); if (d >= 0xdc00 && d <= 0xdfff) { n--; i++; } }
  }
  return n;
}
const longer = (s, limit) => s.length > limit && len(s) > limit;
const head = (s, n) => (s.length <= n ? s : Array.from(s).slice(0, n).join(""));
// str.isprintable() is false for these categories (the space excepted).
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;
/** Python's repr() of a str. */
export function pyRepr(s) {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === quote || ch === "\\") out += "\\" + ch;
    else if (ch === "\t") out += "\\t";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
    else if (c < 0x7f || (c !== 0x20 && !UNPRINTABLE.test(ch))) out += ch;
    else if (c <= 0xff) out += "\\x" + c.toString(16).padStart(2, "0");
    else if (c <= 0xffff) out += "\\u" + c.toString(16).padStart(4, "0");
    else out += "\\U" + c.toString(16).padStart(8, "0");
  }
  return out + quote;
}

// -- lexical forms --------------------------------------------------------------------------------
// An absolute URI (RFC 3986): scheme ":" then only characters a URI may hold, "%" only as the start
// of a percent-encoded octet.
const URI_CHARS = /^[A-Za-z][A-Za-z0-9+.\-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$/;
const BAD_PCT = /%(?![0-9A-Fa-f]{2})/;
const isUri = (s) => URI_CHARS.test(s) && (!s.includes("%") || !BAD_PCT.test(s));
const CBV_URI_PREFIXES = ["urn:epcglobal:cbv", "http://ns.gs1.org/cbv/", "https://ns.gs1.org/cbv/"];
const GS1_VOC_PREFIXES = ["http://gs1.org/voc/", "https://gs1.org/voc/", "http://www.gs1.org/voc/", "https://www.gs1.org/voc/"];
const D = "[0-9]";
const TZ_OFFSET = new RegExp(`^[+-](?:(?:0${D}|1[0-3]):[0-5]${D}|14:00)$`, "u");
const UOM = /^[A-Z0-9]{2,3}$/;
const HEX = /^[A-Fa-f0-9]+$/;

// The calendar is fromisoformat's: year 1-9999, real month days, hour < 24, no leap second, an offset
// under 24 hours (its minutes unchecked: +05:75 is 6h15).
const DATETIME = /^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.\d{1,9})?(?:[Zz]|[+-](\d\d):(\d\d))$/;
const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
function isTime(s) {
  const m = isStr(s) ? DATETIME.exec(s) : null;
  if (m === null) return false;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number);
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59) return false;
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  if (d > MONTH_DAYS[mo - 1] + (mo === 2 && leap ? 1 : 0)) return false;
  return m[7] === undefined || Number(m[7]) * 60 + Number(m[8]) < 24 * 60;
}

// -- GS1 keys -------------------------------------------------------------------------------------
// characters of the GS1 AI encodable character set 82 as they appear in EPC URIs
const C82 = "[!'()*+,\\-.0-9:;=A-Z_a-z%]";
/** Company prefix (6-12 digits) "." reference, adding up to `total` digits. */
function digits(total, refMin, refMax) {
  const alts = [];
  for (let cp = 6; cp < 13; cp++) if (refMin <= total - cp && total - cp <= refMax) alts.push(`${D}{${cp}}\\.${D}{${total - cp}}`);
  return `(?:${alts.join("|")})`;
}
const EPC_ID_FORMS = {
  sgtin: [`${digits(13, 1, 7)}\\.${C82}{1,20}`, "CompanyPrefix.ItemRef.Serial (13 digits before the serial)"],
  sscc: [digits(17, 5, 11), "CompanyPrefix.SerialRef (17 digits)"],
  sgln: [`${digits(12, 0, 6)}\\.${C82}{1,20}`, "CompanyPrefix.LocationRef.Extension (12 digits)"],
  grai: [`${digits(12, 0, 6)}\\.${C82}{0,16}`, "CompanyPrefix.AssetType.Serial (12 digits)"],
  giai: [`${D}{6,12}\\.${C82}{1,24}`, "CompanyPrefix.AssetRef"],
  gsrn: [digits(17, 5, 11), "CompanyPrefix.ServiceRef (17 digits)"],
  gsrnp: [digits(17, 5, 11), "CompanyPrefix.ServiceRef (17 digits)"],
  gdti: [`${digits(12, 0, 6)}\\.${C82}{0,17}`, "CompanyPrefix.DocumentType.Serial (12 digits)"],
  cpi: [`${D}{6,12}\\.(?:[\\-#/0-9A-Z]|%2[3dDfF]){1,24}\\.${D}{1,12}`, "CompanyPrefix.ComponentPartRef.Serial"],
  sgcn: [`${digits(12, 0, 6)}\\.${D}{1,12}`, "CompanyPrefix.CouponRef.Serial (12 digits)"],
  ginc: [`${D}{6,12}\\.${C82}{1,24}`, "CompanyPrefix.ConsignmentRef"],
  gsin: [digits(16, 4, 10), "CompanyPrefix.ShipperRef (16 digits)"],
  itip: [`${digits(13, 1, 7)}\\.${D}${D}\\.${D}${D}\\.${C82}{1,20}`, "CompanyPrefix.ItemRef.Piece.Total.Serial"],
  upui: [`${digits(13, 1, 7)}\\.${C82}{1,28}`, "CompanyPrefix.ItemRef.TPX"],
  pgln: [digits(12, 0, 6), "CompanyPrefix.PartyRef (12 digits)"],
  gid: [`${D}{1,9}\\.${D}{1,8}\\.${D}{1,11}`, "Manager.Class.Serial"],
  usdod: [`[0-9A-Z ]{1,6}\\.${D}{1,11}`, "CAGE.Serial"],
  adi: ["[0-9A-Z]{1,6}\\.[0-9A-Z/\\-%]{0,30}\\.[#0-9A-Z/\\-%]{1,30}", "CAGE.PartNumber.Serial"],
  bic: [`[A-Z]{3}[JUZ]${D}{7}`, "container code"],
  imovn: [`${D}{7}`, "IMO vessel number"],
};
const EPC_CLASS_FORMS = {
  lgtin: [`${digits(13, 1, 7)}\\.${C82}{1,20}`, "CompanyPrefix.ItemRef.Lot (13 digits before the lot)"],
};
const forms = (f) => Object.entries(f).map(([k, [rx]]) => `${k}:${rx}`).join("|");
// One regex for every well-formed EPC URI, EPC class URI and EPC pattern URI.
const EPC_URI = new RegExp(
  `^urn:epc:(?:id:(?:${forms(EPC_ID_FORMS)})|class:(?:${forms(EPC_CLASS_FORMS)})`
  + `|idpat:(?:${Object.keys(EPC_ID_FORMS).join("|")}):[!'()*+,\\-.0-9:;=A-Z_a-z#/ %]+`
  + `|raw:[0-9]+\\.(?:x[0-9A-Fa-f]+|[0-9]+))$`, "u");
// GS1 Digital Link primary keys: the key value's form, and the length of its part ending in a check digit.
const DL_KEYS = {
  "00": [`${D}{18}`, 18],
  "01": [`${D}{14}`, 14],
  253: [`${D}{13}${C82}{0,17}`, 13],
  255: [`${D}{13}${D}{0,12}`, 13],
  401: [`${C82}{1,30}`, null],
  402: [`${D}{17}`, 17],
  414: [`${D}{13}`, 13],
  417: [`${D}{13}`, 13],
  8003: [`${D}{14}${C82}{0,16}`, 14],
  8004: [`${C82}{1,30}`, null],
  8006: [`${D}{18}`, 14],
  8010: ["(?:[\\-#/0-9A-Z]|%2[3dDfF]){1,30}", null],
  8017: [`${D}{18}`, 18],
  8018: [`${D}{18}`, 18],
};
const DL_RX = Object.fromEntries(Object.entries(DL_KEYS).map(([k, [rx, n]]) => [k, [new RegExp(`^${rx}$`, "u"), n]]));
const DL_PRIMARY = /^https?:\/\/[^/?#]+(?:\/[^/?#]*)*?\/(00|01|253|255|401|402|414|417|8003|8004|8006|8010|8017|8018)\/([^/?#]+)/;

/** The GS1 (mod 10) check digit for the (ASCII) digits that precede it. */
export function gs1CheckDigit(ds) {
  let total = 0;
  for (let i = 0; i < ds.length; i++) total += Number(ds[ds.length - 1 - i]) * (i % 2 === 0 ? 3 : 1);
  return (10 - (total % 10)) % 10;
}

/** Why `v` (starting with "urn:epc:") is not a well-formed EPC URI. */
function epcProblem(v) {
  const rest = v.slice(8);
  for (const [kind, f] of [["id:", EPC_ID_FORMS], ["class:", EPC_CLASS_FORMS]]) {
    if (rest.startsWith(kind)) {
      const scheme = rest.slice(kind.length).split(":")[0];
      if (!Object.hasOwn(f, scheme)) return `unknown EPC ${kind.slice(0, -1)} URI scheme ${pyRepr(scheme)}`;
      return `malformed ${scheme} EPC URI (expected urn:epc:${kind}${scheme}:${f[scheme][1]})`;
    }
  }
  if (rest.startsWith("idpat:")) return "malformed EPC pattern URI";
  return "unknown EPC URI form";
}

/** null when `v` (an absolute URI) is a well-formed GS1 identifier URI or no GS1 form at all; else what is wrong. */
function gs1UriProblem(v) {
  if (v.startsWith("urn:epc:")) return EPC_URI.test(v) ? null : epcProblem(v);
  if (v.startsWith("http")) {
    const m = DL_PRIMARY.exec(v);
    if (m === null) {
      if (v.startsWith("https://id.gs1.org/") || v.startsWith("http://id.gs1.org/")) return "GS1 Digital Link URI without a GS1 primary key";
      return null; // some other URI: allowed (EPCIS 2.0 admits any URI)
    }
    const [ai, value] = [m[1], m[2]];
    const [rx, cdLen] = DL_RX[ai];
    if (!rx.test(value)) return `malformed GS1 Digital Link URI (AI ${ai})`;
    if (cdLen !== null) {
      const ds = value.slice(0, cdLen);
      if (gs1CheckDigit(ds.slice(0, -1)) !== Number(ds[ds.length - 1])) return `GS1 Digital Link URI with a wrong check digit (AI ${ai})`;
    }
  }
  return null;
}

// -- value checkers: f(value) returns, or throws an Err naming the problem ------------------------
function uri(v) {
  if (!isStr(v)) bad("must be a string (URI)");
  if (longer(v, MAX_URI_LENGTH)) bad(`longer than ${MAX_URI_LENGTH} characters`);
  if (!isUri(v)) bad("must be an absolute URI");
}

/** An identifier of an object, class, location or party: any absolute URI, with EPC URIs and GS1
 * Digital Link URIs checked for their structure. */
function id(v) {
  if (isStr(v) && v.startsWith("urn:epc:") && !longer(v, 256) && !v.includes("%") && EPC_URI.test(v)) return;
  uri(v);
  if (v[0] === "u" || v[0] === "h") {
    const err = gs1UriProblem(v);
    if (err !== null) bad(err);
  }
}

function time(v) {
  if (!isTime(v)) {
    if (!isStr(v)) bad("must be a string (RFC 3339 date-time)");
    bad("must be an RFC 3339 date-time with a time zone (e.g. 2024-05-01T08:30:00+07:00)");
  }
}

function tzOffset(v) {
  if (!isStr(v) || !TZ_OFFSET.test(v)) bad("must be a time zone offset ±hh:mm between -14:00 and +14:00");
}

function vocab(terms, what, prefixes, advice) {
  return (v) => {
    if (!isStr(v)) bad(`must be a string (${what})`);
    if (terms.has(v)) return;
    if (longer(v, MAX_URI_LENGTH) || !isUri(v)) bad(`unknown ${what} ${pyRepr(head(v, 80))}${advice ? ": use a bare CBV term or a URI of your own" : ""}`);
    if (prefixes.some((p) => v.startsWith(p))) {
      bad(advice ? `${what} ${pyRepr(head(v, 80))}: write CBV terms bare (e.g. 'shipping'), not as URN or GS1 Web URI`
        : `${what} ${pyRepr(head(v, 80))}: write GS1 vocabulary terms bare (e.g. 'Temperature')`);
    }
  };
}
const cbv = (terms, what) => vocab(terms, what, CBV_URI_PREFIXES, true);
const nonCbv = (terms, what) => vocab(terms, what, GS1_VOC_PREFIXES, false);
const bizStep = cbv(TERMS.bizStep, "bizStep");
const disposition = cbv(TERMS.disposition, "disposition");
const btt = cbv(TERMS.bizTransactionType, "business transaction type");
const sdt = cbv(TERMS.sourceDestType, "source/destination type");
const errorReason = cbv(TERMS.errorReason, "error reason");
const component = cbv(TERMS.component, "component");
const measurementType = nonCbv(TERMS.measurementType, "measurement type");
const alertType = nonCbv(TERMS.exception, "sensor alert type");

function action(v) {
  if (!isStr(v) || !TERMS.action.has(v)) bad("must be one of ADD, OBSERVE, DELETE");
}

const BOUND = 10n ** 30n;
function number(v) {
  if (isInt(v)) {
    if (typeof v === "number" || (-BOUND < v && v < BOUND)) return;
    bad("number out of range");
  }
  if (!isFloat(v)) bad("must be a number");
  if (!Number.isFinite(floatOf(v))) bad("must be a finite number");
}

function string(v) {
  if (!isStr(v)) bad("must be a string");
  if (longer(v, MAX_TEXT_LENGTH)) bad(`longer than ${MAX_TEXT_LENGTH} characters`);
}

function boolean(v) {
  if (typeof v !== "boolean") bad("must be true or false");
}

function hexString(v) {
  if (!isStr(v) || !HEX.test(v)) bad("must be a hexadecimal string");
  if (longer(v, MAX_TEXT_LENGTH)) bad(`longer than ${MAX_TEXT_LENGTH} characters`);
}

function list(v, minItems = 0) {
  if (!Array.isArray(v)) bad("must be a list");
  if (v.length > MAX_LIST_ITEMS) bad(`more than ${MAX_LIST_ITEMS} items`);
  if (v.length < minItems) bad(`must hold at least ${minItems} item${minItems > 1 ? "s" : ""}`);
  return v;
}

/** A namespaced extension key: "prefix:name" (a JSON-LD compact IRI) or a full URI. */
const isExtKey = (k) => isStr(k) && k.includes(":") && !longer(k, MAX_URI_LENGTH) && isUri(k);

/** A bounded JSON value (extension contents, ILMD values). */
function jsonValue(v, depth = 0) {
  if (isStr(v)) {
    if (longer(v, MAX_TEXT_LENGTH)) bad(`longer than ${MAX_TEXT_LENGTH} characters`);
  } else if (typeof v === "boolean" || v === null) {
    // any
  } else if (isInt(v) || isFloat(v)) {
    number(v);
  } else if (depth >= MAX_DEPTH) {
    bad(`nested deeper than ${MAX_DEPTH} levels`);
  } else if (isMap(v)) {
    if (v.size > MAX_KEYS) bad(`more than ${MAX_KEYS} keys`);
    for (const [k, x] of v) {
      if (!isStr(k) || longer(k, MAX_URI_LENGTH)) bad("keys must be strings of bounded length");
      at(`.${k}`, () => jsonValue(x, depth + 1));
    }
  } else if (Array.isArray(v)) {
    if (v.length > MAX_LIST_ITEMS) bad(`more than ${MAX_LIST_ITEMS} items`);
    v.forEach((x, i) => at(`[${i}]`, () => jsonValue(x, depth + 1)));
  } else {
    bad("must be a JSON value");
  }
}

const UNKNOWN = "unknown field (extensions need a namespace prefix, e.g. 'example:field')";

/** A checker for an object with known fields (and namespaced extensions). */
function object(fields, required = [], extensions = true) {
  const known = new Map(Object.entries(fields));
  return (v) => {
    if (!isMap(v)) bad("must be an object");
    for (const r of required) if (!v.has(r)) bad("required", `.${r}`);
    for (const [k, x] of v) {
      const f = known.get(k);
      at(`.${k}`, () => {
        if (f !== undefined) f(x);
        else if (extensions && isExtKey(k)) jsonValue(x, 1);
        else bad(UNKNOWN);
      });
    }
  };
}

function unique(v) {
  // the items are strings by now (each was checked); a repeat is named where it repeats
  if (new Set(v).size === v.length) return;
  const seen = new Set();
  v.forEach((x, i) => {
    if (seen.has(x)) bad(`duplicate item ${head(pyRepr(x), 80)}`, `[${i}]`);
    seen.add(x);
  });
}

function listOf(item, minItems = 0, distinct = false) {
  return (v) => {
    list(v, minItems);
    v.forEach((x, i) => at(`[${i}]`, () => item(x)));
    if (distinct && v.length > 1) unique(v);
  };
}

const epcList = listOf(id, 0, true);

function uom(v) {
  if (!isStr(v) || !UOM.test(v)) bad("must be a UN/CEFACT Rec. 20 unit code (2-3 capitals or digits, e.g. KGM)");
}

function quantityElement(v) {
  if (!isMap(v)) bad("must be an object");
  if (!v.has("epcClass")) bad("required", ".epcClass");
  for (const [k, x] of v) {
    at(`.${k}`, () => {
      if (k === "epcClass") id(x);
      else if (k === "quantity") {
        number(x);
        if ((isFloat(x) ? floatOf(x) : x) < 0) bad("must not be negative");
      } else if (k === "uom") uom(x);
      else bad("unknown field (a quantity element has epcClass, quantity, uom)");
    });
  }
}
const quantityList = listOf(quantityElement);

function context(v) {
  if (isStr(v)) uri(v);
  else if (isMap(v)) jsonValue(v, 1);
  else if (Array.isArray(v)) {
    list(v);
    v.forEach((x, i) => at(`[${i}]`, () => {
      if (isStr(x)) uri(x);
      else if (isMap(x)) jsonValue(x, 2);
      else bad("must be a URI or an object");
    }));
    const strs = v.filter(isStr);
    if (new Set(strs).size !== strs.length) bad("duplicate context entries");
  } else bad("must be a URI, an object or a list of them");
}

function certificationInfo(v) {
  if (Array.isArray(v)) listOf(uri)(v);
  else uri(v);
}

const errorDeclaration = object(
  { declarationTime: time, reason: errorReason, correctiveEventIDs: listOf(uri) }, ["declarationTime"]);

/** readPoint / bizLocation: {"id": URI} plus namespaced extensions. */
function location(v) {
  if (!isMap(v)) bad("must be an object");
  if (!v.has("id")) bad("required", ".id");
  for (const [k, x] of v) {
    at(`.${k}`, () => {
      if (k === "id") id(x);
      else if (isExtKey(k)) jsonValue(x, 1);
      else bad(UNKNOWN);
    });
  }
}

/** bizTransaction / source / destination: exactly {type, <valueKey>}. */
function typedPair(valueKey, typeCheck, valueCheck, typeRequired) {
  const required = typeRequired ? ["type", valueKey] : [valueKey];
  return (v) => {
    if (!isMap(v)) bad("must be an object");
    for (const r of required) if (!v.has(r)) bad("required", `.${r}`);
    for (const [k, x] of v) {
      at(`.${k}`, () => {
        if (k === valueKey) valueCheck(x);
        else if (k === "type") typeCheck(x);
        else bad(`unknown field (allowed: type, ${valueKey})`);
      });
    }
  };
}
const bizTransaction = typedPair("bizTransaction", btt, uri, false);
const source = typedPair("source", sdt, id, true);
const destination = typedPair("destination", sdt, id, true);

const pdList = listOf(disposition, 1, true);
const pdObject = object({ set: pdList, unset: pdList }, [], false);
function persistentDisposition(v) {
  pdObject(v);
  if (!v.has("set") && !v.has("unset")) bad("needs 'set' or 'unset'");
}

const sensorMetadata = object({
  time, deviceID: uri, deviceMetadata: uri, rawData: uri, startTime: time, endTime: time,
  dataProcessingMethod: uri, bizRules: uri,
});
const sensorReport = object({
  type: measurementType, exception: alertType, deviceID: uri, deviceMetadata: uri, rawData: uri,
  dataProcessingMethod: uri, bizRules: uri, time, microorganism: uri, chemicalSubstance: uri,
  coordinateReferenceSystem: uri, value: number, component, stringValue: string, booleanValue: boolean,
  hexBinaryValue: hexString, uriValue: uri, minValue: number, maxValue: number, meanValue: number, sDev: number,
  percRank: number, percValue: number, uom: string,
}, ["type"]);
const sensorElement = object({ sensorMetadata, sensorReport: listOf(sensorReport, 1) }, ["sensorReport"]);

function ilmd(v) {
  if (!isMap(v)) bad("must be an object");
  if (v.size > MAX_KEYS) bad(`more than ${MAX_KEYS} keys`);
  for (const [k, x] of v) {
    at(`.${k}`, () => {
      if (!isExtKey(k)) bad("ILMD keys need a namespace prefix (e.g. 'cbvmda:lotNumber')");
      jsonValue(x, 2);
    });
  }
}

// -- event types ----------------------------------------------------------------------------------
const COMMON = {
  "@context": context, eventTime: time, recordTime: time, eventTimeZoneOffset: tzOffset, eventID: uri,
  certificationInfo, errorDeclaration,
};
const WHAT_WHERE_WHY = {
  bizStep, disposition, readPoint: location, bizLocation: location, bizTransactionList: listOf(bizTransaction),
  sourceList: listOf(source), destinationList: listOf(destination), sensorElementList: listOf(sensorElement),
};
const FIELDS = Object.fromEntries(Object.entries({
  ObjectEvent: { action, epcList, quantityList, persistentDisposition, ilmd },
  AggregationEvent: { action, parentID: id, childEPCs: epcList, childQuantityList: quantityList },
  TransactionEvent: { action, bizTransactionList: listOf(bizTransaction, 1), parentID: id, epcList, quantityList },
  TransformationEvent: {
    inputEPCList: epcList, inputQuantityList: quantityList, outputEPCList: epcList, outputQuantityList: quantityList,
    transformationID: uri, persistentDisposition, ilmd,
  },
  AssociationEvent: { action, parentID: id, childEPCs: epcList, childQuantityList: quantityList },
}).map(([t, own]) => [t, new Map(Object.entries({ ...COMMON, ...WHAT_WHERE_WHY, ...own }))]));
const REQUIRED = {
  ObjectEvent: ["eventTime", "eventTimeZoneOffset", "action"],
  AggregationEvent: ["eventTime", "eventTimeZoneOffset", "action"],
  TransactionEvent: ["eventTime", "eventTimeZoneOffset", "action", "bizTransactionList"],
  TransformationEvent: ["eventTime", "eventTimeZoneOffset"],
  AssociationEvent: ["eventTime", "eventTimeZoneOffset", "action", "parentID"],
};
const TYPES_TEXT = "must be one of " + [...TERMS.eventType].sort().join(", ");

const nonempty = (event, key) => { const v = event.get(key); return Array.isArray(v) && v.length > 0; };

function checkEvent(event) {
  if (!isMap(event)) bad("must be an object");
  const etype = event.has("type") ? event.get("type") : null;
  if (etype === null) bad("required", ".type");
  if (!isStr(etype) || !TERMS.eventType.has(etype)) bad(TYPES_TEXT, ".type");
  for (const r of REQUIRED[etype]) if (!event.has(r)) bad("required", `.${r}`);
  const fields = FIELDS[etype];
  for (const [k, v] of event) {
    const f = fields.get(k);
    at(`.${k}`, () => {
      if (f !== undefined) f(v);
      else if (k === "type") { /* checked above */ } else if (isExtKey(k)) jsonValue(v, 1);
      else bad(`unknown field for ${etype} (extensions need a namespace prefix, e.g. 'example:field')`);
    });
  }

  // what each event type must say about its objects
  const act = event.get("action");
  if (etype === "ObjectEvent") {
    if (!(event.has("epcList") || nonempty(event, "quantityList") || (nonempty(event, "sensorElementList") && event.has("readPoint")))) {
      bad("required (or a non-empty quantityList, or sensorElementList with readPoint)", ".epcList");
    }
    if (event.has("ilmd") && act !== "ADD") bad("only allowed when action is ADD", ".ilmd");
  } else if (etype === "AggregationEvent" || etype === "AssociationEvent") {
    if (act !== "DELETE" && !(nonempty(event, "childEPCs") || nonempty(event, "childQuantityList"))) {
      bad("required (or a non-empty childQuantityList) unless action is DELETE", ".childEPCs");
    }
    if (etype === "AggregationEvent" && act !== "OBSERVE" && !event.has("parentID")) bad("required when action is ADD or DELETE", ".parentID");
  } else if (etype === "TransactionEvent") {
    if (act !== "DELETE" && !(event.has("epcList") || nonempty(event, "quantityList"))) {
      bad("required (or a non-empty quantityList) unless action is DELETE", ".epcList");
    }
  } else { // TransformationEvent
    const hasIn = nonempty(event, "inputEPCList") || nonempty(event, "inputQuantityList");
    const hasOut = nonempty(event, "outputEPCList") || nonempty(event, "outputQuantityList");
    if (!(hasIn && hasOut)) {
      if (!(hasIn || hasOut)) bad("a TransformationEvent needs inputs and outputs", ".inputEPCList");
      if (!event.has("transformationID")) bad("required (or a transformationID linking to the other side)", hasIn ? ".outputEPCList" : ".inputEPCList");
    }
  }
}

/** Check one EPCIS 2.0 event (a Map, as canonical.js decodes it); throws EventInvalid naming the
 * failing path (`path` names the event itself, "event" by default). */
export function validateEvent(event, path = "event") {
  try {
    checkEvent(event);
  } catch (e) {
    if (!(e instanceof Err)) throw e;
    let where = path + e.parts.reverse().join("");
    if (where.startsWith(".")) where = where.slice(1);
    throw new EventInvalid(where || "document", e.msg);
  }
}
