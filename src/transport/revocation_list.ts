// Certificate revocation lists for mutual TLS. Deno's node:tls ignores the
// `crl` option, so the server reads the serial numbers a CRL revokes
// itself and refuses client certificates carrying one of them. The CRL is
// the operator's own file (made with `openssl ca -gencrl`), trusted as
// given: its signature is not checked.

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

/** One DER element: tag, and where its content starts and ends. */
interface Element {
  tag: number;
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
  return { tag, start, end };
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

/** The serial numbers one DER CRL revokes. */
function revokedIn(der: Uint8Array, out: Set<string>): void {
  const list = readElement(der, 0, der.length);
  if (list.tag !== SEQUENCE) throw new RevocationListError("not a CRL (no SEQUENCE)");
  const [tbs] = children(der, list);
  if (tbs === undefined || tbs.tag !== SEQUENCE) throw new RevocationListError("not a CRL");
  const fields = children(der, tbs);
  let i = 0;
  if (fields[i]?.tag === INTEGER) i++; // version
  i += 2; // signature algorithm, issuer
  const isTime = (e: Element | undefined) =>
    e !== undefined && (e.tag === UTC_TIME || e.tag === GENERALIZED_TIME);
  if (!isTime(fields[i])) throw new RevocationListError("not a CRL (no thisUpdate time)");
  i++;
  if (isTime(fields[i])) i++; // nextUpdate
  const revoked = fields[i];
  if (revoked === undefined || revoked.tag !== SEQUENCE) return; // revokes nothing
  for (const entry of children(der, revoked)) {
    const [serial] = children(der, entry);
    if (serial === undefined || serial.tag !== INTEGER) {
      throw new RevocationListError("a revoked entry has no serial number");
    }
    let hex = "";
    for (let b = serial.start; b < serial.end; b++) {
      hex += der[b]!.toString(16).padStart(2, "0");
    }
    out.add(normalSerial(hex));
  }
}

/**
 * The serial numbers revoked by the CRLs in a PEM text (one or more
 * `-----BEGIN X509 CRL-----` blocks), in the form of {@link normalSerial}.
 *
 * @param pem The PEM text.
 * @returns The revoked serial numbers.
 * @throws {RevocationListError} When the text holds no CRL or a damaged one.
 *
 * @example
 * ```ts ignore
 * const revoked = revokedSerials(await Deno.readTextFile("crl.pem"));
 * console.log(revoked.has("1001"));
 * ```
 */
export function revokedSerials(pem: string): Set<string> {
  try {
    return parseRevocationLists(pem);
  } catch (err) {
    const why = err instanceof RevocationListError ? err.message : String(err);
    throw new RevocationListError(
      `Cannot use the certificate revocation list (tls.crl, --tls-crl): ${why}; give the CA's CRL in PEM, as made by openssl ca -gencrl`,
    );
  }
}

function parseRevocationLists(pem: string): Set<string> {
  const out = new Set<string>();
  const blocks = [
    ...pem.matchAll(/-----BEGIN X509 CRL-----([\s\S]*?)-----END X509 CRL-----/g),
  ];
  if (blocks.length === 0) {
    throw new RevocationListError("no '-----BEGIN X509 CRL-----' block (expected a PEM CRL)");
  }
  for (const [, body] of blocks) {
    let der: Uint8Array;
    try {
      der = Uint8Array.from(atob(body!.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
    } catch {
      throw new RevocationListError("a CRL block is not base64");
    }
    revokedIn(der, out);
  }
  return out;
}
