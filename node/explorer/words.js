// An EPCIS event in plain words: the wording of client/trace.py (describe, _where) and the identifiers
// of client/format/epcis/items.py, for the explorer's timeline. tests/explorer/test_words.py runs both
// implementations on the same events and requires the same text, so the two cannot drift apart.

const EPC_LISTS = ["epcList", "childEPCs", "inputEPCList", "outputEPCList"];
const QUANTITY_LISTS = ["quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList"];
const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const list = (v) => (Array.isArray(v) ? v : []);

/** Every GS1 identifier an event names, without repeats, in the node's history-index order. */
export function identifiers(event) {
  if (!isObj(event)) return [];
  const found = [];
  const add = (v) => { if (typeof v === "string" && v && !found.includes(v)) found.push(v); };
  add(event.parentID);
  for (const k of EPC_LISTS) for (const v of list(event[k])) add(v);
  for (const k of QUANTITY_LISTS) for (const q of list(event[k])) if (isObj(q)) add(q.epcClass);
  for (const [k, f] of [["sourceList", "source"], ["destinationList", "destination"]]) {
    for (const s of list(event[k])) if (isObj(s)) add(s[f]);
  }
  for (const k of ["readPoint", "bizLocation"]) if (isObj(event[k])) add(event[k].id);
  return found;
}

/** The readable tail of a CBV URI or term (urn:epcglobal:cbv:bizstep:shipping -> shipping). */
function last(uri) {
  if (typeof uri !== "string") return "";
  for (const sep of ["#", "/", ":"]) {
    if (uri.includes(sep) && /^(urn:|http:\/\/|https:\/\/)/.test(uri)) uri = uri.slice(uri.lastIndexOf(sep) + 1);
  }
  return uri.replaceAll("_", " ");
}

const get = (o, k, d) => (Object.hasOwn(o, k) ? o[k] : d);

/** One line saying what `event` did, from the point of view of `item` when given (trace.describe). */
export function describe(event, item = null) {
  const etype = get(event, "type", "event");
  const action = get(event, "action", "");
  const step = last(event.bizStep), disp = last(event.disposition);
  const parts = [];
  if (etype === "AggregationEvent") {
    const parent = get(event, "parentID", "?");
    const children = list(event.childEPCs).length + list(event.childQuantityList).length;
    if (item !== null && item === parent) {
      const verb = { ADD: "packed with", DELETE: "unpacked of", OBSERVE: "seen with" }[action] ?? "with";
      parts.push(`${verb} ${children} item(s)`);
    } else {
      const verb = { ADD: "packed into", DELETE: "unpacked from", OBSERVE: "seen in" }[action] ?? "in";
      parts.push(`${verb} ${parent}`);
    }
  } else if (etype === "TransformationEvent") {
    if (item !== null && list(event.inputEPCList).includes(item)) parts.push("consumed by a transformation");
    else if (item !== null && list(event.outputEPCList).includes(item)) parts.push("produced by a transformation");
    else parts.push("transformation");
  } else if (action === "ADD" && etype === "ObjectEvent") {
    parts.push(step === "" || step === "commissioning" ? "commissioned" : `${step} (added)`);
  } else if (action === "DELETE") {
    parts.push(`${step || "removed"} (deleted)`);
  }
  if (step && !(etype === "ObjectEvent" && action === "ADD" && step === "commissioning")) parts.unshift(step);
  if (!parts.length) parts.push(String(etype));
  let text = [...new Set(parts)].join(": ");
  if (disp) text += ` [${disp}]`;
  return text;
}

/** Where it happened: the business location, the read point, or the destination (trace._where). */
export function where(event) {
  for (const k of ["bizLocation", "readPoint"]) {
    const loc = event[k];
    if (isObj(loc) && typeof loc.id === "string") return loc.id;
  }
  for (const s of list(event.destinationList)) if (isObj(s) && typeof s.destination === "string") return `to ${s.destination}`;
  return "";
}
