// The check loop shared by the npm client drivers, under Node and under Deno.
//
// A driver is `{ library, checks }` where each check is an async function
// (ctx) => observation. The loop runs the six checks in order, each with its
// own deadline, and prints one JSON line per check on stdout:
//   {"check":"submit","result":"timbus-xirtam"}
//   {"check":"status","unsupported":"why"}
//   {"check":"fail","error":"timed out after 4000 ms"}
// tests/matrix/matrix_test.ts judges the observations; the drivers only report.

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import process from "node:process";

/** Names of the six checks, in the order they run. */
export const CHECKS = ["submit", "background", "status", "fail", "exception", "large"];

/** The large payload: byte i is i % 251 (NULs included), `size` bytes. */
export function largePayload(size) {
  const block = Buffer.alloc(251);
  for (let i = 0; i < 251; i++) block[i] = i;
  const out = Buffer.alloc(size);
  for (let off = 0; off < size; off += 251) block.copy(out, off, 0, Math.min(251, size - off));
  return out;
}

/** What the large check reports: length and SHA-256 of what came back. */
export function digest(bytes) {
  return { length: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") };
}

/** A promise settled by `settle(resolve, reject)`, rejected after `ms`. */
export function within(ms, what, settle) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
    settle(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/** Sleep `ms` milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Run every check of `driver` with the config `config` (parsed from the
 * command line's JSON argument) and exit the process.
 */
export async function drive(driver, lib, config) {
  const ctx = { ...config, lib, Buffer, largePayload, digest, within, sleep };
  for (const check of CHECKS) {
    const fn = driver.checks[check];
    let obs;
    try {
      obs = fn ? await fn(ctx) : { unsupported: "no check" };
    } catch (err) {
      obs = { error: String(err && err.message ? err.message : err) };
    }
    process.stdout.write(JSON.stringify({ check, ...obs }) + "\n");
  }
  // Connections a library leaves open (a check that timed out) must not keep us alive.
  process.exit(0);
}
