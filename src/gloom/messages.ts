/**
 * Gloom message shapes, error frames, and the mapping between Gloom JSON
 * bodies and Gearman job data.
 *
 * @module
 */

/**
 * A Gloom job id: a string (as in the protocol's examples) or a number.
 * Unique within the server while the job is outstanding.
 *
 * @example
 * ```ts
 * import type { GloomId } from "@x/gearman/gloom";
 * const ids: GloomId[] = ["resize-7", 42];
 * console.assert(ids.length === 2);
 * ```
 */
export type GloomId = string | number;

/**
 * The `error` codes of Gloom error frames (`{"type":"error","error":CODE,"message":TEXT}`,
 * plus `"id"` when the error is about one job):
 *
 * - `invalid_json`: the frame is not UTF-8 JSON. The connection stays open.
 * - `not_an_object`: the frame's JSON is not an object.
 * - `frame_too_large`: the length prefix is over the server's limit; the
 *   connection is closed after this frame (the stream is out of step).
 * - `unknown_type`: `type` is not one this port knows.
 * - `missing_field`: a required field (`type`, `job_type`, `id`, `body`) is absent.
 * - `invalid_field`: a field has the wrong JSON type or an unusable value.
 * - `duplicate_id`: a master submitted an id that is still outstanding.
 * - `no_job`: a worker sent a response while holding no job.
 * - `job_failed`: the job failed (a Gearman worker sent WORK_FAIL, the job
 *   ran out of retries, or an admin cancelled it); the id is free again.
 * - `job_exception`: a Gearman worker sent WORK_EXCEPTION; `message` is its text.
 * - `queue_full`: the job type's queue is at its `maxqueue` limit.
 * - `rejected`: the server refused the job for another reason (`message` says why).
 * - `server_error`: something went wrong inside the server.
 * - `connection_closed`: (client side only) the connection ended first.
 *
 * @example
 * ```ts
 * import type { GloomErrorCode } from "@x/gearman/gloom";
 * const code: GloomErrorCode = "duplicate_id";
 * console.assert(code === "duplicate_id");
 * ```
 */
export type GloomErrorCode =
  | "invalid_json"
  | "not_an_object"
  | "frame_too_large"
  | "unknown_type"
  | "missing_field"
  | "invalid_field"
  | "duplicate_id"
  | "no_job"
  | "job_failed"
  | "job_exception"
  | "queue_full"
  | "rejected"
  | "permission_denied"
  | "server_error"
  | "connection_closed";

/**
 * An error frame as the server sends it.
 *
 * @example
 * ```ts
 * import type { GloomErrorFrame } from "@x/gearman/gloom";
 * const frame: GloomErrorFrame = {
 *   type: "error",
 *   error: "duplicate_id",
 *   id: "a",
 *   message: 'Job id "a" is already outstanding; wait for its response before reusing it',
 * };
 * console.assert(frame.type === "error");
 * ```
 */
export interface GloomErrorFrame {
  /** Always `"error"`. */
  type: "error";
  /** What kind of error. */
  error: GloomErrorCode;
  /** What went wrong and what to do, in words. */
  message: string;
  /** The job id the error is about, when there is one. */
  id?: GloomId;
}

/** Build an error frame. */
export function errorFrame(code: GloomErrorCode, message: string, id?: GloomId): GloomErrorFrame {
  return id === undefined
    ? { type: "error", error: code, message }
    : { type: "error", error: code, id, message };
}

const utf8Encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });
const lenientDecoder = new TextDecoder();

/** A decoded frame: a JSON object, or the error frame to answer with. */
export type Decoded =
  | { ok: true; message: Record<string, unknown> }
  | { ok: false; error: GloomErrorFrame };

/** Decode one frame's payload into a JSON object. */
export function decodeFrame(payload: Uint8Array): Decoded {
  let value: unknown;
  try {
    value = JSON.parse(strictDecoder.decode(payload));
  } catch (err) {
    return {
      ok: false,
      error: errorFrame(
        "invalid_json",
        `Frame of ${payload.length} bytes is not UTF-8 JSON (${(err as Error).message})`,
      ),
    };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return {
      ok: false,
      error: errorFrame(
        "not_an_object",
        `Expected a JSON object with a "type" field, got ${
          Array.isArray(value) ? "an array" : value === null ? "null" : `a ${typeof value}`
        }`,
      ),
    };
  }
  return { ok: true, message: value as Record<string, unknown> };
}

/** A Gloom body as Gearman job data: its JSON text in UTF-8. */
export function bodyToData(body: unknown): Uint8Array {
  return utf8Encoder.encode(JSON.stringify(body) ?? "null");
}

/** Gearman job data as a Gloom body: parsed as JSON, or else the text itself. */
export function dataToBody(data: Uint8Array): unknown {
  const text = lenientDecoder.decode(data);
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** UTF-8 bytes of text. */
export function utf8(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

/** Text of UTF-8 bytes (bad bytes become U+FFFD). */
export function fromUtf8(bytes: Uint8Array): string {
  return lenientDecoder.decode(bytes);
}

/** Whether a value can be a job id. */
export function isGloomId(v: unknown): v is GloomId {
  return typeof v === "string" || (typeof v === "number" && Number.isFinite(v));
}
