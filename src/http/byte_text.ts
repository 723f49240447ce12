// Function names, unique ids and handles are byte strings (one char code
// 0-255 per byte; see src/protocol/_bytes.ts). People and Prometheus want
// text: these helpers turn byte strings into UTF-8 text without losing
// what a name was, and back from URL path segments.

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * A byte string as text: its bytes decoded as UTF-8 when they are valid
 * UTF-8 (the usual case: `"résumé"` sent by any client shows as such);
 * otherwise each byte that is not part of a valid UTF-8 sequence is shown
 * as `\xNN` (two lowercase hex digits), the rest decoded. The result is
 * always valid Unicode, so it can go into JSON and Prometheus text.
 */
export function displayText(byteStr: string): string {
  // Fast path: ASCII is its own UTF-8.
  let ascii = true;
  for (let i = 0; i < byteStr.length; i++) {
    if (byteStr.charCodeAt(i) > 0x7f) {
      ascii = false;
      break;
    }
  }
  if (ascii) return byteStr;
  const bytes = toBytes(byteStr);
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return decodeLossless(bytes);
  }
}

/** Whether {@link displayText} shows these bytes exactly (they are valid UTF-8). */
export function isUtf8(byteStr: string): boolean {
  try {
    strictUtf8.decode(toBytes(byteStr));
    return true;
  } catch {
    return false;
  }
}

/**
 * A byte string percent-encoded for a URL path segment or query value:
 * unreserved ASCII stays, every other byte is `%XX`. Exact for any bytes,
 * and what {@link percentDecode} reads back.
 */
export function percentEncode(byteStr: string): string {
  let out = "";
  for (let i = 0; i < byteStr.length; i++) {
    const c = byteStr.charCodeAt(i);
    if (
      (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) ||
      c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e
    ) {
      out += byteStr[i];
    } else {
      out += "%" + c.toString(16).toUpperCase().padStart(2, "0");
    }
  }
  return out;
}

/**
 * Decode a percent-encoded URL component to a byte string: `%XX` is that
 * byte, and any other character is its UTF-8 bytes. Unlike
 * `decodeURIComponent`, bytes that are not UTF-8 survive. Returns
 * `undefined` for a `%` not followed by two hex digits.
 */
export function percentDecode(component: string): string | undefined {
  let out = "";
  for (let i = 0; i < component.length; i++) {
    const ch = component[i]!;
    if (ch === "%") {
      const hex = component.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined;
      out += String.fromCharCode(parseInt(hex, 16));
      i += 2;
    } else if (ch.charCodeAt(0) < 0x80) {
      out += ch;
    } else {
      const cp = component.codePointAt(i)!;
      if (cp > 0xffff) i++;
      for (const b of encoder.encode(String.fromCodePoint(cp))) out += String.fromCharCode(b);
    }
  }
  return out;
}

/** The query parameter `name` of a URL's raw query string, as a byte string. */
export function queryParam(search: string, name: string): string | undefined {
  const query = search.startsWith("?") ? search.slice(1) : search;
  for (const pair of query.split("&")) {
    const eq = pair.indexOf("=");
    const key = percentDecode((eq < 0 ? pair : pair.slice(0, eq)).replaceAll("+", " "));
    if (key !== name) continue;
    return percentDecode((eq < 0 ? "" : pair.slice(eq + 1)).replaceAll("+", " "));
  }
  return undefined;
}

const encoder = new TextEncoder();

function toBytes(byteStr: string): Uint8Array {
  const out = new Uint8Array(byteStr.length);
  for (let i = 0; i < byteStr.length; i++) out[i] = byteStr.charCodeAt(i);
  return out;
}

const hex = (b: number) => "\\x" + b.toString(16).padStart(2, "0");

/** Decode UTF-8, writing each byte outside a valid sequence as `\xNN`. */
function decodeLossless(b: Uint8Array): string {
  let out = "";
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    let len = 0;
    let min = 0;
    if (c < 0x80) {
      out += String.fromCharCode(c);
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      min = 0x10000;
    }
    let cp = len === 2 ? c & 0x1f : len === 3 ? c & 0x0f : c & 0x07;
    let ok = len > 0 && i + len <= b.length;
    for (let k = 1; ok && k < len; k++) {
      const cc = b[i + k]!;
      if ((cc & 0xc0) !== 0x80) ok = false;
      else cp = (cp << 6) | (cc & 0x3f);
    }
    if (ok && cp >= min && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff)) {
      out += String.fromCodePoint(cp);
      i += len;
    } else {
      out += hex(c);
      i++;
    }
  }
  return out;
}
