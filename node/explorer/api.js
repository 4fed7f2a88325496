// Reads from the node that serves this page, signed with a member key when one is loaded
// (docs/api.md "Signed reads": RFC 9421 HTTP Message Signatures, Ed25519, label `rantai`).
// The key is read from a file the user picks and stays in this page's memory: it is never sent,
// stored or uploaded; only signatures leave the browser.
import { decode, hex, text } from "./canonical.js";

export const MSGPACK = "application/msgpack";

export class ApiError extends Error {
  constructor(status, rule, message) {
    super(message);
    this.status = status;
    this.rule = rule;
  }
}

function pemBody(pem) {
  const m = /-----BEGIN PRIVATE KEY-----([\s\S]+?)-----END PRIVATE KEY-----/.exec(pem);
  if (!m) {
    if (pem.includes("ENCRYPTED PRIVATE KEY")) throw new Error("this key file is encrypted with a passphrase; the page reads unencrypted PKCS#8 PEM keys only");
    throw new Error("not a PEM private key (-----BEGIN PRIVATE KEY-----)");
  }
  return Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
}

const b64 = (bytes) => btoa(String.fromCharCode(...bytes));
const fromB64url = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

export class Api {
  constructor(base = "") {
    this.base = base;
    this.key = null; // {privateKey: CryptoKey, publicHex}
  }

  /** A member's key from its PEM text (rantai's key files: PKCS#8, Ed25519). */
  async loadKey(pem) {
    const der = pemBody(pem);
    let privateKey;
    try {
      privateKey = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, true, ["sign"]);
    } catch {
      throw new Error("not an Ed25519 private key");
    }
    const jwk = await crypto.subtle.exportKey("jwk", privateKey);
    this.key = { privateKey, publicHex: hex(fromB64url(jwk.x)) };
    return this.key.publicHex;
  }

  forgetKey() { this.key = null; }

  /** The RFC 9421 signature headers for a GET of `url` (an absolute URL of this origin). */
  async signatureHeaders(method, url, created = Math.floor(Date.now() / 1000)) {
    const params = `("@method" "@authority" "@path" "@query");created=${created};keyid="${this.key.publicHex}";alg="ed25519"`;
    const base = [
      `"@method": ${method.toUpperCase()}`,
      `"@authority": ${url.host.toLowerCase()}`,
      `"@path": ${url.pathname}`,
      `"@query": ${url.search || "?"}`,
      `"@signature-params": ${params}`,
    ].join("\n");
    const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, this.key.privateKey, text(base)));
    return { "Signature-Input": `rantai=${params}`, Signature: `rantai=:${b64(sig)}:` };
  }

  /** GET `path`; msgpack answers are decoded canonically (decode refuses anything else). */
  async get(path, { msgpack = true, raw = false } = {}) {
    const url = new URL(this.base + path, location.href);
    const headers = { Accept: msgpack ? MSGPACK : "application/json" };
    if (this.key) Object.assign(headers, await this.signatureHeaders("GET", url));
    const response = await fetch(url, { headers, cache: "no-store" });
    const body = new Uint8Array(await response.arrayBuffer());
    if (!response.ok) {
      let rule = "error", message = `HTTP ${response.status}`;
      try {
        const type = response.headers.get("content-type") || "";
        const err = type.includes(MSGPACK) ? Object.fromEntries(decode(body)) : JSON.parse(new TextDecoder().decode(body));
        rule = err.error || rule;
        message = err.message || err.detail || message;
      } catch { /* a body that is not a rantai error: keep the status */ }
      throw new ApiError(response.status, rule, message);
    }
    if (raw) return body;
    if (!msgpack) return JSON.parse(new TextDecoder().decode(body));
    return decode(body);
  }
}
