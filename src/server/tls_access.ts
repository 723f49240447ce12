// Access rules by client-certificate name (mutual TLS): which certificate
// names (CN, or DNS/URI/email subject alternative names) may submit which
// functions, register as workers for which functions, and run admin
// commands.

import type { Logger } from "@logtape/logtape";
import { type MutualTlsUpgrader, TlsHandshakeError } from "../transport/mutual_tls.ts";

/**
 * What one certificate name may do. Function patterns are exact names, a
 * prefix ending in `*` (`"image.*"`), or `"*"` for every function; a
 * missing list allows nothing.
 *
 * @example A client that may submit two functions and read admin status
 * ```ts
 * import type { TlsAccessRule } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * const rule: TlsAccessRule = { submit: ["reverse", "image.*"], admin: "read" };
 * assert.equal(rule.work, undefined);
 * ```
 */
export interface TlsAccessRule {
  /**
   * Functions this name may submit jobs to (every SUBMIT_JOB type).
   * @default [] (none)
   */
  submit?: string[];
  /**
   * Functions this name may register for as a worker (CAN_DO, CAN_DO_TIMEOUT).
   * @default [] (none)
   */
  work?: string[];
  /**
   * Admin commands: `"none"`, `"read"` (status, workers, show ...) or
   * `"all"` (also shutdown, maxqueue, cancel ...). Sending the admin token
   * (`auth TOKEN`) still allows every command.
   * @default "none"
   */
  admin?: "none" | "read" | "all";
}

/**
 * Access rules keyed by client-certificate name: its common name (CN), or
 * any of its subject alternative names of type DNS, URI or email (the
 * first of its names, CN first, with an entry is used); the key `"*"`
 * applies to every verified certificate none of whose names has an entry. A name with no entry and no `"*"` may do nothing (it may still
 * connect, and gets a refusal for each request).
 *
 * @example
 * ```ts
 * import type { TlsAccessRules } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * const rules: TlsAccessRules = {
 *   "web-frontend": { submit: ["resize"] },
 *   "resizer": { work: ["resize"] },
 *   "ops": { admin: "all" },
 * };
 * assert.deepEqual(rules.resizer, { work: ["resize"] });
 * ```
 */
export type TlsAccessRules = Record<string, TlsAccessRule>;

/** From a certificate's name, or its names (CN first, then SANs), to its compiled rule. */
export type AccessLookup = (names: string | readonly string[]) => CompiledAccess;

/**
 * The server's client-certificate check, shared by the Gearman port, the
 * Gloom ports and the HTTPS endpoint: the handshake that verifies the
 * chain (and the CRL), and the access rules, if any. `access` is replaced
 * when the rules change (setAccessRules, SIGHUP), for all of them at once.
 */
export interface ClientCertificates {
  /** Verifies client certificates. */
  readonly upgrader: MutualTlsUpgrader;
  /** What a certificate's names may do; undefined: no rules (any verified client may do anything). */
  access: AccessLookup | undefined;
}

/**
 * Log a client the mutual-TLS handshake refused (no certificate, one no
 * --tls-ca CA signed, a revoked one), saying what to do about it; a
 * handshake cut short because the server is closing is not logged.
 *
 * @param logger Where to log.
 * @param what What was refused, e.g. "a TLS connection".
 * @param remote The client's `host:port`.
 * @param err Why the handshake failed.
 * @param closing Whether the server is shutting down.
 */
export function warnRefusedClient(
  logger: Logger,
  what: string,
  remote: string,
  err: Error,
  closing: boolean,
): void {
  if (closing && err instanceof TlsHandshakeError) return;
  logger.warn(
    `Refused ${what} from {remote}: {error}; clients need a certificate signed by the --tls-ca CA`,
    { remote, error: err.message },
  );
}

/** One name's rule, compiled for quick checks. */
export class CompiledAccess {
  /** The certificate name it was made for. */
  readonly name: string;
  /** Admin commands allowed. */
  readonly admin: "none" | "read" | "all";
  readonly #submit: (fn: string) => boolean;
  readonly #work: (fn: string) => boolean;

  constructor(name: string, rule: TlsAccessRule) {
    this.name = name;
    this.admin = rule.admin ?? "none";
    this.#submit = matcher(rule.submit ?? []);
    this.#work = matcher(rule.work ?? []);
  }

  /** Whether this name may submit jobs to `fn`. */
  maySubmit(fn: string): boolean {
    return this.#submit(fn);
  }

  /** Whether this name may register as a worker for `fn`. */
  mayWork(fn: string): boolean {
    return this.#work(fn);
  }
}

function matcher(patterns: string[]): (fn: string) => boolean {
  if (patterns.includes("*")) return () => true;
  const exact = new Set(patterns.filter((p) => !p.endsWith("*")));
  const prefixes = patterns.filter((p) => p.endsWith("*")).map((p) => p.slice(0, -1));
  if (prefixes.length === 0) return (fn) => exact.has(fn);
  return (fn) => exact.has(fn) || prefixes.some((p) => fn.startsWith(p));
}

const ADMIN = new Set(["none", "read", "all"]);
const FIELDS = new Set(["submit", "work", "admin"]);

/**
 * Check rules (as parsed from JSON) and compile them.
 *
 * @param rules The rules.
 * @param source Where they came from, for error messages.
 * @returns A lookup from a certificate's name, or its names (CN first, then
 *   subject alternative names), to the compiled rule of the first name with
 *   an entry, else that of `"*"`.
 * @throws {TypeError} When the rules are not shaped as {@link TlsAccessRules}.
 */
export function compileAccessRules(
  rules: unknown,
  source = "tls access rules",
): AccessLookup {
  if (typeof rules !== "object" || rules === null || Array.isArray(rules)) {
    throw new TypeError(
      `Cannot use ${source}: expected a JSON object keyed by certificate name, like {"alice": {"submit": ["reverse"]}}`,
    );
  }
  const compiled = new Map<string, CompiledAccess>();
  for (const [name, rule] of Object.entries(rules)) {
    const where = `${source}, entry ${JSON.stringify(name)}`;
    if (typeof rule !== "object" || rule === null || Array.isArray(rule)) {
      throw new TypeError(
        `Cannot use ${where}: expected an object with "submit", "work" and "admin"`,
      );
    }
    for (const key of Object.keys(rule)) {
      if (!FIELDS.has(key)) {
        throw new TypeError(
          `Cannot use ${where}: unknown field ${
            JSON.stringify(key)
          }; the fields are "submit", "work" and "admin"`,
        );
      }
    }
    const r = rule as Record<string, unknown>;
    for (const key of ["submit", "work"]) {
      const list = r[key];
      if (
        list !== undefined &&
        (!Array.isArray(list) || list.some((f) => typeof f !== "string" || f === ""))
      ) {
        throw new TypeError(
          `Cannot use ${where}: "${key}" must be a list of function names or patterns ending in *`,
        );
      }
    }
    if (r.admin !== undefined && !ADMIN.has(r.admin as string)) {
      throw new TypeError(`Cannot use ${where}: "admin" must be "none", "read" or "all"`);
    }
    compiled.set(name, new CompiledAccess(name, r as TlsAccessRule));
  }
  const fallback = compiled.get("*");
  return (names) => {
    const list = typeof names === "string" ? [names] : names;
    for (const n of list) {
      const own = compiled.get(n);
      if (own !== undefined) return own;
    }
    const name = list[0] ?? "";
    return fallback === undefined ? new CompiledAccess(name, {}) : new CompiledAccess(name, {
      ...(rules as TlsAccessRules)["*"],
    });
  };
}
