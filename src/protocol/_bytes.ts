// Byte helpers shared by the protocol layer. Internal: not exported from mod.ts.
//
// Function names, unique ids and handles are kept as "byte strings": one
// char code (0-255) per byte, so they round-trip exactly whatever their
// encoding, and can be Map keys without a TextDecoder on the hot path.

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** An empty byte array shared by everyone who needs one. */
export const EMPTY: Uint8Array = new Uint8Array(0);

/** Decode bytes to a byte string (one char per byte). */
export function byteString(bytes: Uint8Array, start = 0, end: number = bytes.length): string {
  const n = end - start;
  if (n <= 0) return "";
  if (n <= 64) {
    let s = "";
    for (let i = start; i < end; i++) s += String.fromCharCode(bytes[i]!);
    return s;
  }
  let s = "";
  for (let i = start; i < end; i += 4096) {
    s += String.fromCharCode.apply(
      null,
      bytes.subarray(i, Math.min(end, i + 4096)) as unknown as number[],
    );
  }
  return s;
}

/** Encode a byte string (char codes 0-255) to bytes. */
export function byteStringBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Encode text as UTF-8. */
export function utf8(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

/** Decode UTF-8 text. */
export function fromUtf8(b: Uint8Array): string {
  return utf8Decoder.decode(b);
}

/** Encode text as UTF-8 into `target` at `offset`; returns bytes written. */
export function utf8Into(s: string, target: Uint8Array, offset: number): number {
  return utf8Encoder.encodeInto(s, target.subarray(offset)).written;
}

/** Convert a user value (UTF-8 text or raw bytes) to bytes. */
export function toBytes(v: string | Uint8Array): Uint8Array {
  return typeof v === "string" ? utf8Encoder.encode(v) : v;
}

/**
 * Parse an unsigned decimal integer from bytes[start, end). Returns -1 when
 * the range is empty, holds a non-digit, or exceeds 2^53.
 */
export function parseDecimal(bytes: Uint8Array, start: number, end: number): number {
  if (end <= start || end - start > 16) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = bytes[i]! - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n <= Number.MAX_SAFE_INTEGER ? n : -1;
}

/** Whether bytes[start, start + prefix.length) equals prefix. */
export function startsWith(bytes: Uint8Array, start: number, prefix: Uint8Array): boolean {
  if (bytes.length - start < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[start + i] !== prefix[i]) return false;
  return true;
}

/** Whether two byte ranges are equal. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
