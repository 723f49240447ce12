// Shared helpers for the HTTP endpoint tests: a server with --http on free
// loopback ports, and fetch shortcuts that always consume the body (the
// resource sanitizer wants every response body read or cancelled).

import assert from "node:assert/strict";
import { serve, type ServeOptions, type Server } from "../../server.ts";
import { type Family, parseExposition } from "./_prom.ts";

/** A token long enough for `adminToken`. */
export const TOKEN = "test-token-0123456789abcdef";

/** A server with the HTTP endpoint on, both on free loopback ports. */
export function startHttpServer(options: ServeOptions = {}): Server {
  return serve({
    hostname: "127.0.0.1",
    port: 0,
    handleHost: "test",
    http: { hostname: "127.0.0.1", port: 0 },
    ...options,
  });
}

/** `host:port` of the Gearman port, for Client and Worker. */
export function gearmanAddress(server: Server): string {
  return `127.0.0.1:${server.addr.port}`;
}

/** The base URL of the HTTP endpoint. */
export function baseUrl(server: Server): string {
  const addr = server.httpAddr;
  assert.ok(addr, "the server has no HTTP endpoint");
  return `http://127.0.0.1:${addr.port}`;
}

/** A response with its body read. */
export interface Fetched {
  status: number;
  headers: Headers;
  body: string;
}

/** Fetch and read the body. */
export async function get(server: Server, path: string, init?: RequestInit): Promise<Fetched> {
  const res = await fetch(baseUrl(server) + path, init);
  return { status: res.status, headers: res.headers, body: await res.text() };
}

/** GET a JSON endpoint, asserting 200. */
export async function getJson<T>(server: Server, path: string): Promise<T> {
  const r = await get(server, path);
  assert.equal(r.status, 200, `${path}: ${r.body}`);
  assert.match(r.headers.get("content-type") ?? "", /^application\/json/);
  return JSON.parse(r.body) as T;
}

/** POST (with the token unless `token` is null) and parse the JSON reply. */
export async function post(
  server: Server,
  path: string,
  body?: unknown,
  token: string | null = TOKEN,
): Promise<{ status: number; json: Record<string, unknown>; headers: Headers }> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const r = await get(server, path, {
    method: "POST",
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: r.status, json: JSON.parse(r.body), headers: r.headers };
}

/** Scrape /metrics and parse it strictly (throws when the text is not valid exposition). */
export async function scrape(server: Server): Promise<Map<string, Family>> {
  const res = await fetch(baseUrl(server) + "/metrics");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  return parseExposition(new Uint8Array(await res.arrayBuffer()));
}

/** Poll until `check` holds (5 s by default). */
export { waitFor as eventually } from "../_helpers.ts";
