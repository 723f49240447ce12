// Certificate revocation lists for mutual TLS. Deno's node:tls ignores the
// `crl` option, so the server reads the CRLs itself: each CRL's signature is
// checked with the key of the CA (among those given for client
// certificates) that issued it, and a client certificate is refused when the
// CRL of its own issuer lists its serial number.

import { verify, X509Certificate } from "node:crypto";

/**
 * A certificate revocation list could not be used: the message says why.
 *
 * @example Tell it from other errors
 * ```ts
 * import { RevocationListError } from "@x/gearman/server";
 * const err: Error = new RevocationListError("Cannot use the CRL: not base64");
 * console.assert(err.name === "RevocationListError");
 * ```
 */
export class RevocationListError extends Error {
  /**
   * Make the error.
   *
   * @param message What is wrong with the file.
   */
  constructor(message: string) {
    super(message);
    this.name = "RevocationListError";
  }
}

/** One DER element: tag, where it starts (its tag byte), and where its content starts and ends. */
interface Element {
  tag: number;
  at: number;
  start: number;
  end: number;
}

function readElement(der: Uint8Array, at: number, limit: number): Element {
  if (at + 2 > limit) throw new RevocationListError("truncated DER");
  const tag = der[at]!;
  let length = der[at + 1]!;
  let start = at + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 4 || start + bytes > limit) {
      throw new RevocationListError("bad DER length");
    }
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + der[start + i]!;
    start += bytes;
  }
  const end = start + length;
  if (end > limit) throw new RevocationListError("truncated DER");
  return { tag, at, start, end };
}

/** The children of a constructed element. */
function children(der: Uint8Array, e: Element): Element[] {
  const out: Element[] = [];
  for (let at = e.start; at < e.end;) {
    const c = readElement(der, at, e.end);
    out.push(c);
    at = c.end;
  }
  return out;
}

const SEQUENCE = 0x30;
const INTEGER = 0x02;
const BIT_STRING = 0x03;
const OBJECT_ID = 0x06;
const EXPLICIT_0 = 0xa0;
const UTC_TIME = 0x17;
const GENERALIZED_TIME = 0x18;

/**
 * A certificate serial number as node:tls reports it
 * (`getPeerCertificate().serialNumber`): upper-case hex, no leading zeros.
 *
 * @param hex A serial number in hex, any case, leading zeros or colons allowed.
 * @returns The normal form.
 */
export function normalSerial(hex: string): string {
  const s = hex.replaceAll(":", "").toUpperCase().replace(/^0+/, "");
  return s === "" ? "0" : s;
}

const utf8 = new TextDecoder();

function hexOf(der: Uint8Array, from: number, to: number): string {
  let hex = "";
  for (let b = from; b < to; b++) hex += der[b]!.toString(16).padStart(2, "0");
  return hex;
}

/** An OBJECT IDENTIFIER's dotted form. */
function oidOf(der: Uint8Array, e: Element): string {
  const parts: number[] = [];
  let n = 0;
  for (let b = e.start; b < e.end; b++) {
    n = n * 128 + (der[b]! & 0x7f);
    if ((der[b]! & 0x80) === 0) {
      if (parts.length === 0) parts.push(n < 80 ? Math.floor(n / 40) : 2, n < 80 ? n % 40 : n - 80);
      else parts.push(n);
      n = 0;
    }
  }
  return parts.join(".");
}

/**
 * The issuer (`field` 2) or subject (`field` 4) name of a DER certificate,
 * as the hex of its DER bytes; undefined when it cannot be read.
 */
function certificateName(der: Uint8Array, field: 2 | 4): string | undefined {
  try {
    const cert = readElement(der, 0, der.length);
    const [tbs] = children(der, cert);
    if (tbs === undefined) return undefined;
    const fields = children(der, tbs);
    // [0] version, serial, signature, issuer, validity, subject
    const name = fields[(fields[0]?.tag === EXPLICIT_0 ? 1 : 0) + field];
    return name?.tag === SEQUENCE ? hexOf(der, name.at, name.end) : undefined;
  } catch {
    return undefined;
  }
}

/** Hash for each signature algorithm a CRL may be signed with (null: the key decides, Ed25519). */
const SIGNATURE_HASHES: Readonly<Record<string, string | null>> = {
  "1.2.840.113549.1.1.5": "sha1",
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
  "1.2.840.10045.4.3.2": "sha256",
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
  "1.3.101.112": null,
};

/** One CRL, read. */
interface ParsedCrl {
  /** Hex of the issuer name's DER. */
  issuer: string;
  /** The issuer's common name or whole name, for messages. */
  issuerText: string;
  serials: string[];
  /** The signed part (TBSCertList), and its signature. */
  signed: Uint8Array;
  algorithm: string;
  signature: Uint8Array;
}

/** Read one DER CRL. */
function parseCrl(der: Uint8Array): ParsedCrl {
  const list = readElement(der, 0, der.length);
  if (list.tag !== SEQUENCE) throw new RevocationListError("not a CRL (no SEQUENCE)");
  const [tbs, algorithm, signature] = children(der, list);
  if (tbs === undefined || tbs.tag !== SEQUENCE) throw new RevocationListError("not a CRL");
  const algorithmId = algorithm?.tag === SEQUENCE ? children(der, algorithm)[0] : undefined;
  if (algorithmId?.tag !== OBJECT_ID || signature?.tag !== BIT_STRING) {
    throw new RevocationListError("not a CRL (no signature)");
  }
  const fields = children(der, tbs);
  let i = 0;
  if (fields[i]?.tag === INTEGER) i++; // version
  i++; // signature algorithm
  const issuer = fields[i++];
  if (issuer === undefined || issuer.tag !== SEQUENCE) {
    throw new RevocationListError("not a CRL (no issuer)");
  }
  const isTime = (e: Element | undefined) =>
    e !== undefined && (e.tag === UTC_TIME || e.tag === GENERALIZED_TIME);
  if (!isTime(fields[i])) throw new RevocationListError("not a CRL (no thisUpdate time)");
  i++;
  if (isTime(fields[i])) i++; // nextUpdate
  const serials: string[] = [];
  const revoked = fields[i];
  if (revoked !== undefined && revoked.tag === SEQUENCE) {
    for (const entry of children(der, revoked)) {
      const [serial] = children(der, entry);
      if (serial === undefined || serial.tag !== INTEGER) {
        throw new RevocationListError("a revoked entry has no serial number");
      }
      serials.push(normalSerial(hexOf(der, serial.start, serial.end)));
    }
  }
  return {
    issuer: hexOf(der, issuer.at, issuer.end),
    issuerText: nameText(der, issuer),
    serials,
    signed: der.subarray(tbs.at, tbs.end),
    algorithm: oidOf(der, algorithmId),
    // A BIT STRING's first byte counts the unused bits of the last (0 here).
    signature: der.subarray(signature.start + 1, signature.end),
  };
}

/** A name's CN if it has one, else its attribute values joined, for messages. */
function nameText(der: Uint8Array, name: Element): string {
  const values: string[] = [];
  let cn: string | undefined;
  for (const set of children(der, name)) {
    for (const pair of children(der, set)) {
      const [type, value] = children(der, pair);
      if (type === undefined || value === undefined) continue;
      const text = utf8.decode(der.subarray(value.start, value.end));
      if (oidOf(der, type) === "2.5.4.3") cn = text;
      values.push(text);
    }
  }
  return cn ?? values.join(", ");
}

/**
 * Check a CRL's signature with the key of the CA that issued it, one of
 * `cas`; throws when none issued it or the signature does not verify.
 */
function checkSignature(crl: ParsedCrl, cas: readonly X509Certificate[]): void {
  const ca = cas.find((c) => certificateName(new Uint8Array(c.raw), 4) === crl.issuer);
  if (ca === undefined) {
    throw new RevocationListError(
      `a CRL is issued by "${crl.issuerText}", which is not one of the CAs given for client certificates (tls.ca, --tls-ca)`,
    );
  }
  if (!(crl.algorithm in SIGNATURE_HASHES)) {
    throw new RevocationListError(
      `a CRL of "${crl.issuerText}" is signed with an algorithm this server cannot check (OID ${crl.algorithm}); sign it with RSA or ECDSA and SHA-1/256/384/512, or with Ed25519`,
    );
  }
  let ok: boolean;
  try {
    ok = verify(SIGNATURE_HASHES[crl.algorithm]!, crl.signed, ca.publicKey, crl.signature);
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new RevocationListError(
      `the signature of a CRL of "${crl.issuerText}" does not verify with that CA's key: it was not made by that CA, or it was altered`,
    );
  }
}

/** The certificates of a PEM text (one or more `-----BEGIN CERTIFICATE-----` blocks). */
function certificatesOf(pem: string): X509Certificate[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)]
    .map((m) => new X509Certificate(m[0]));
}

/**
 * The client certificates some CRLs revoke, each CRL's serial numbers tied
 * to the CA that issued (and signed) it.
 *
 * @example
 * ```ts ignore
 * const crl = await Deno.readTextFile("crl.pem");
 * const list = RevocationList.parse(crl, await Deno.readTextFile("ca.pem"));
 * console.log(list.isRevoked(certificateDer, "1001"));
 * ```
 */
export class RevocationList {
  /** Serials revoked, by the hex of their issuer's DER name. */
  readonly #byIssuer: ReadonlyMap<string, ReadonlySet<string>>;

  private constructor(byIssuer: ReadonlyMap<string, ReadonlySet<string>>) {
    this.#byIssuer = byIssuer;
  }

  /** A list that revokes nothing. */
  static readonly EMPTY: RevocationList = new RevocationList(new Map());

  /**
   * Read the CRLs in a PEM text (one or more `-----BEGIN X509 CRL-----`
   * blocks), each checked against the CA among `caPem`'s certificates
   * that issued it.
   *
   * @param pem The CRLs.
   * @param caPem The CAs client certificates are verified with.
   * @returns The list.
   * @throws {RevocationListError} When the text holds no CRL, a damaged one,
   * one no given CA issued, or one whose signature does not verify.
   */
  static parse(pem: string, caPem: string): RevocationList {
    try {
      const blocks = [
        ...pem.matchAll(/-----BEGIN X509 CRL-----([\s\S]*?)-----END X509 CRL-----/g),
      ];
      if (blocks.length === 0) {
        throw new RevocationListError("no '-----BEGIN X509 CRL-----' block (expected a PEM CRL)");
      }
      const cas = certificatesOf(caPem);
      const byIssuer = new Map<string, Set<string>>();
      for (const [, body] of blocks) {
        let der: Uint8Array;
        try {
          der = Uint8Array.from(atob(body!.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
        } catch {
          throw new RevocationListError("a CRL block is not base64");
        }
        const crl = parseCrl(der);
        checkSignature(crl, cas);
        const serials = byIssuer.get(crl.issuer) ?? new Set<string>();
        for (const s of crl.serials) serials.add(s);
        byIssuer.set(crl.issuer, serials);
      }
      return new RevocationList(byIssuer);
    } catch (err) {
      const why = err instanceof RevocationListError ? err.message : String(err);
      throw new RevocationListError(
        `Cannot use the certificate revocation list (tls.crl, --tls-crl): ${why}; give the CRLs of the --tls-ca CAs in PEM, as made by openssl ca -gencrl`,
      );
    }
  }

  /**
   * Whether the CRL of a certificate's issuer lists its serial number.
   *
   * @param certificate The certificate's DER (undefined: any CRL counts).
   * @param serial Its serial number in hex (see {@link normalSerial}).
   * @returns True when revoked.
   */
  isRevoked(certificate: Uint8Array | undefined, serial: string): boolean {
    const issuer = certificate === undefined ? undefined : certificateName(certificate, 2);
    const s = normalSerial(serial);
    if (issuer !== undefined) return this.#byIssuer.get(issuer)?.has(s) ?? false;
    for (const serials of this.#byIssuer.values()) if (serials.has(s)) return true;
    return false;
  }
}
