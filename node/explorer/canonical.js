// Canonical msgpack (docs/format.md §1), JSON read the way the reference reads it (integers stay
// integers, 1.0 stays a float), SHA-256 and Ed25519 from WebCrypto. The values:
//   nil null · bool true/false · integer a Number (safe range) or a BigInt · float an F64 ·
//   text a String · byte string a Uint8Array · array an Array · map a Map (insertion order kept,
//   so a decoder can notice unsorted keys by re-encoding).
// One value has exactly one encoding, so "same bytes" is "same value" — types included.

export class EncodingError extends Error {
  constructor(message) { super(message); this.rule = "encoding"; }
}

/** A float64 value: kept apart from integers, as the encoding keeps them apart. */
export class F64 {
  constructor(value) { this.value = value; }
}

export const MAX_DEPTH = 32;
const U64 = 2n ** 64n, I64 = -(2n ** 63n);
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

export const isInt = (v) => (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
export const isBytes = (v) => v instanceof Uint8Array;
export const isMap = (v) => v instanceof Map;
export const big = (v) => BigInt(v);

// -- hex ------------------------------------------------------------------------------------------
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
export function hex(bytes) {
  let s = "";
  for (const b of bytes) s += HEX[b];
  return s;
}
export const LOWER_HEX = /^(?:[0-9a-f]{2})*$/;
export function unhex(text) {
  if (typeof text !== "string" || !LOWER_HEX.test(text)) throw new EncodingError("encoding: lower-case hex expected");
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
  return out;
}
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
export function equalBytes(a, b) {
  if (!(a instanceof Uint8Array) || !(b instanceof Uint8Array) || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
export function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}
export const text = (s) => utf8.encode(s);

// -- encode ---------------------------------------------------------------------------------------
class Writer {
  constructor() { this.buf = new Uint8Array(256); this.len = 0; }
  room(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size); next.set(this.buf.subarray(0, this.len)); this.buf = next;
  }
  byte(b) { this.room(1); this.buf[this.len++] = b; }
  bytes(bs) { this.room(bs.length); this.buf.set(bs, this.len); this.len += bs.length; }
  uint(n, width) { // n a BigInt, width in bytes, big-endian
    this.room(width);
    for (let i = width - 1; i >= 0; i--) { this.buf[this.len + i] = Number(n & 0xffn); n >>= 8n; }
    this.len += width;
  }
  head(small, base, codes, n) { // fix form below `small`, else the shortest of codes (8/16/32-bit lengths)
    if (small && n < small) return this.byte(base + n);
    if (codes[0] !== null && n < 256) { this.byte(codes[0]); return this.uint(BigInt(n), 1); }
    if (n < 65536) { this.byte(codes[1]); return this.uint(BigInt(n), 2); }
    if (n < 2 ** 32) { this.byte(codes[2]); return this.uint(BigInt(n), 4); }
    throw new EncodingError("encoding: too long");
  }
  done() { return this.buf.slice(0, this.len); }
}

function writeInt(w, v) {
  const n = BigInt(v);
  if (n < I64 || n >= U64) throw new EncodingError("encoding: integer out of the 64-bit range");
  if (n >= 0n) {
    if (n < 128n) return w.byte(Number(n));
    if (n < 256n) { w.byte(0xcc); return w.uint(n, 1); }
    if (n < 65536n) { w.byte(0xcd); return w.uint(n, 2); }
    if (n < 2n ** 32n) { w.byte(0xce); return w.uint(n, 4); }
    w.byte(0xcf); return w.uint(n, 8);
  }
  if (n >= -32n) return w.byte(Number(n + 256n));
  const two = (width) => w.uint(n + (1n << BigInt(8 * width)), width);
  if (n >= -128n) { w.byte(0xd0); return two(1); }
  if (n >= -32768n) { w.byte(0xd1); return two(2); }
  if (n >= -(2n ** 31n)) { w.byte(0xd2); return two(4); }
  w.byte(0xd3); return two(8);
}

function writeValue(w, v, depth) {
  if (v === null || v === undefined) return w.byte(0xc0);
  if (v === false) return w.byte(0xc2);
  if (v === true) return w.byte(0xc3);
  if (isInt(v)) return writeInt(w, v);
  if (typeof v === "number") throw new EncodingError("encoding: a non-integer Number (floats are F64 values)");
  if (v instanceof F64) {
    if (!Number.isFinite(v.value)) throw new EncodingError("encoding: NaN and infinity have no canonical form");
    const b = new Uint8Array(8); new DataView(b.buffer).setFloat64(0, v.value);
    w.byte(0xcb); return w.bytes(b);
  }
  if (typeof v === "string") {
    if (!v.isWellFormed()) throw new EncodingError("encoding: text that is not valid Unicode (a lone surrogate)");
    const b = utf8.encode(v);
    w.head(32, 0xa0, [0xd9, 0xda, 0xdb], b.length); return w.bytes(b);
  }
  if (v instanceof Uint8Array) { w.head(0, 0, [0xc4, 0xc5, 0xc6], v.length); return w.bytes(v); }
  if (depth > MAX_DEPTH) throw new EncodingError(`encoding: nested deeper than ${MAX_DEPTH}`);
  if (Array.isArray(v)) {
    w.head(16, 0x90, [null, 0xdc, 0xdd], v.length);
    for (const x of v) writeValue(w, x, depth + 1);
    return;
  }
  const entries = v instanceof Map ? [...v.entries()] : Object.entries(v);
  const keyed = entries.map(([k, x]) => {
    if (typeof k !== "string") throw new EncodingError("encoding: map keys are text");
    return [utf8.encode(k), k, x];
  });
  keyed.sort((a, b) => compareBytes(a[0], b[0]));
  w.head(16, 0x80, [null, 0xde, 0xdf], keyed.length);
  for (const [, k, x] of keyed) { writeValue(w, k, depth + 1); writeValue(w, x, depth + 1); }
}

/** The canonical bytes of a value (a Map's or object's keys sorted by their UTF-8 bytes). */
export function encode(value) {
  const w = new Writer();
  writeValue(w, value, 0);
  return w.done();
}

// -- decode ---------------------------------------------------------------------------------------
function read(data, pos, depth) {
  const need = (n) => { if (pos.at + n > data.length) throw new EncodingError("encoding: malformed msgpack (truncated)"); };
  const take = (n) => { need(n); const s = data.subarray(pos.at, pos.at + n); pos.at += n; return s; };
  const uint = (n) => { let x = 0n; for (const b of take(n)) x = (x << 8n) | BigInt(b); return x; };
  const num = (x) => (x <= BigInt(Number.MAX_SAFE_INTEGER) && x >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(x) : x);
  const sint = (n) => { const x = uint(n); const top = 1n << BigInt(8 * n - 1); return num(x >= top ? x - (top << 1n) : x); };
  const str = (n) => {
    try { return strictUtf8.decode(take(n)); } catch (e) {
      if (e instanceof EncodingError) throw e;
      throw new EncodingError("encoding: malformed msgpack (invalid UTF-8)");
    }
  };
  const container = () => { if (depth + 1 > MAX_DEPTH + 1) throw new EncodingError(`encoding: nested deeper than ${MAX_DEPTH}`); };
  const array = (n) => { container(); const out = []; for (let i = 0; i < n; i++) out.push(read(data, pos, depth + 1)); return out; };
  const map = (n) => {
    container();
    const out = new Map();
    for (let i = 0; i < n; i++) {
      const k = read(data, pos, depth + 1);
      if (typeof k !== "string") throw new EncodingError("encoding: map keys are text");
      out.set(k, read(data, pos, depth + 1)); // a repeated key collapses: the re-encoding then differs
    }
    return out;
  };
  const c = take(1)[0];
  if (c <= 0x7f) return c;
  if (c <= 0x8f) return map(c - 0x80);
  if (c <= 0x9f) return array(c - 0x90);
  if (c <= 0xbf) return str(c - 0xa0);
  if (c >= 0xe0) return c - 256;
  switch (c) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return take(Number(uint(1))).slice();
    case 0xc5: return take(Number(uint(2))).slice();
    case 0xc6: return take(Number(uint(4))).slice();
    case 0xcb: {
      const f = new DataView(take(8).slice().buffer).getFloat64(0);
      if (!Number.isFinite(f)) throw new EncodingError("encoding: NaN and infinity have no canonical form");
      return new F64(f);
    }
    case 0xcc: return num(uint(1));
    case 0xcd: return num(uint(2));
    case 0xce: return num(uint(4));
    case 0xcf: return num(uint(8));
    case 0xd0: return sint(1);
    case 0xd1: return sint(2);
    case 0xd2: return sint(4);
    case 0xd3: return sint(8);
    case 0xd9: return str(Number(uint(1)));
    case 0xda: return str(Number(uint(2)));
    case 0xdb: return str(Number(uint(4)));
    case 0xdc: return array(Number(uint(2)));
    case 0xdd: return array(Number(uint(4)));
    case 0xde: return map(Number(uint(2)));
    case 0xdf: return map(Number(uint(4)));
    default: throw new EncodingError(`encoding: malformed msgpack (type byte 0x${HEX[c]}: ext, float32 or unused)`);
  }
}

/** Parse canonical bytes: exactly one value, nothing after it, and re-encoding gives the same bytes. */
export function decode(data) {
  if (!(data instanceof Uint8Array)) throw new EncodingError("encoding: expected bytes");
  if (data.length === 0) throw new EncodingError("encoding: empty input");
  const pos = { at: 0 };
  const value = read(data, pos, 0);
  if (pos.at !== data.length) throw new EncodingError("encoding: trailing bytes after the value");
  if (!equalBytes(encode(value), data)) {
    throw new EncodingError("encoding: not canonical (key order, duplicate keys or integer/float form)");
  }
  return value;
}

/** Canonical bytes equal: the same value, types included (1, 1.0 and true differ). */
export function sameValue(a, b) {
  try { return equalBytes(encode(a), encode(b)); } catch { return false; }
}

/** Byte strings as lower-case hex, walked through maps and arrays (the API's JSON spelling). */
export function hexify(v) {
  if (v instanceof Uint8Array) return hex(v);
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [k, hexify(x)]));
  if (Array.isArray(v)) return v.map(hexify);
  return v;
}

/** A value for display and for the wording functions: Maps as plain objects, F64 and BigInt as Numbers. */
export function plain(v) {
  if (v instanceof Uint8Array) return hex(v);
  if (v instanceof F64) return v.value;
  if (typeof v === "bigint") return Number(v);
  if (v instanceof Map) { const o = {}; for (const [k, x] of v) o[k] = plain(x); return o; }
  if (Array.isArray(v)) return v.map(plain);
  return v;
}

// -- JSON as the reference reads it ---------------------------------------------------------------
/** Parse JSON text: numbers without fraction or exponent are integers, others F64; objects are Maps
 * (a repeated key keeps its last value, as Python's json does). Throws SyntaxError. */
export function parseJson(source) {
  let i = 0;
  const s = source;
  const fail = (what) => { throw new SyntaxError(`JSON: ${what} at offset ${i}`); };
  const ws = () => { while (i < s.length && " \t\n\r".includes(s[i])) i++; };
  const value = (depth) => {
    ws();
    if (depth > 10000) fail("too deep");
    const c = s[i];
    if (c === "{") {
      i++; const out = new Map(); ws();
      if (s[i] === "}") { i++; return out; }
      for (;;) {
        ws(); if (s[i] !== '"') fail("a key expected");
        const k = string(); ws(); if (s[i++] !== ":") fail("':' expected");
        out.set(k, value(depth + 1)); ws();
        if (s[i] === ",") { i++; continue; }
        if (s[i] === "}") { i++; return out; }
        fail("',' or '}' expected");
      }
    }
    if (c === "[") {
      i++; const out = []; ws();
      if (s[i] === "]") { i++; return out; }
      for (;;) {
        out.push(value(depth + 1)); ws();
        if (s[i] === ",") { i++; continue; }
        if (s[i] === "]") { i++; return out; }
        fail("',' or ']' expected");
      }
    }
    if (c === '"') return string();
    if (s.startsWith("true", i)) { i += 4; return true; }
    if (s.startsWith("false", i)) { i += 5; return false; }
    if (s.startsWith("null", i)) { i += 4; return null; }
    const m = /^-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(s.slice(i, i + 400));
    if (!m) fail("a value expected");
    i += m[0].length;
    if (m[1] === undefined && m[2] === undefined) {
      const n = BigInt(m[0]);
      return n <= BigInt(Number.MAX_SAFE_INTEGER) && n >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(n) : n;
    }
    return new F64(parseFloat(m[0]));
  };
  const string = () => {
    i++; let out = "";
    for (;;) {
      if (i >= s.length) fail("unterminated string");
      const c = s[i++];
      if (c === '"') return out;
      if (c < " ") fail("a control character in a string");
      if (c !== "\\") { out += c; continue; }
      const e = s[i++];
      const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" }[e];
      if (simple !== undefined) { out += simple; continue; }
      if (e !== "u" || !/^[0-9a-fA-F]{4}$/.test(s.slice(i, i + 4))) fail("a bad escape");
      out += String.fromCharCode(parseInt(s.slice(i, i + 4), 16)); i += 4;
    }
  };
  const v = value(0); ws();
  if (i !== s.length) fail("extra data");
  return v;
}

// -- hashes and signatures ------------------------------------------------------------------------
export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

const keys = new Map();
/** Ed25519 (RFC 8032) verification by WebCrypto; a key that is not a curve point verifies nothing. */
export async function ed25519Verify(publicKey, signature, message) {
  const id = hex(publicKey);
  let key = keys.get(id);
  if (key === undefined) {
    try { key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]); }
    catch { key = null; }
    keys.set(id, key);
  }
  if (key === null) return false;
  try { return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, message); } catch { return false; }
}

const DOMAIN = text("rantai/1\u0000");
/** signing_bytes(kind, chain, body) = "rantai/1" ‖ 0x00 ‖ kind ‖ 0x00 ‖ chain ‖ body (format.md §2). */
export function signingBytes(kind, chain, body) {
  return concat(DOMAIN, text(kind), new Uint8Array([0]), chain, body);
}

/** A member's or validator's id: the first 16 hex digits of SHA-256(public key). */
export async function keyId(publicKey) {
  return hex(await sha256(publicKey)).slice(0, 16);
}
