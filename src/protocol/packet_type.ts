/**
 * The Gearman packet types, numbered as C++ gearmand numbers them
 * (libgearman-1.0/protocol.h; the first 36 are also in the protocol text).
 *
 * @module
 */

/**
 * Every Gearman packet type by its protocol name.
 *
 * @example Look up a type number
 * ```ts
 * import { PacketType } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * assert.equal(PacketType.SUBMIT_JOB, 7);
 * assert.equal(PacketType.STATUS_RES_UNIQUE, 42);
 * ```
 */
export const PacketType = {
  CAN_DO: 1,
  CANT_DO: 2,
  RESET_ABILITIES: 3,
  PRE_SLEEP: 4,
  UNUSED: 5,
  NOOP: 6,
  SUBMIT_JOB: 7,
  JOB_CREATED: 8,
  GRAB_JOB: 9,
  NO_JOB: 10,
  JOB_ASSIGN: 11,
  WORK_STATUS: 12,
  WORK_COMPLETE: 13,
  WORK_FAIL: 14,
  GET_STATUS: 15,
  ECHO_REQ: 16,
  ECHO_RES: 17,
  SUBMIT_JOB_BG: 18,
  ERROR: 19,
  STATUS_RES: 20,
  SUBMIT_JOB_HIGH: 21,
  SET_CLIENT_ID: 22,
  CAN_DO_TIMEOUT: 23,
  ALL_YOURS: 24,
  WORK_EXCEPTION: 25,
  OPTION_REQ: 26,
  OPTION_RES: 27,
  WORK_DATA: 28,
  WORK_WARNING: 29,
  GRAB_JOB_UNIQ: 30,
  JOB_ASSIGN_UNIQ: 31,
  SUBMIT_JOB_HIGH_BG: 32,
  SUBMIT_JOB_LOW: 33,
  SUBMIT_JOB_LOW_BG: 34,
  SUBMIT_JOB_SCHED: 35,
  SUBMIT_JOB_EPOCH: 36,
  SUBMIT_REDUCE_JOB: 37,
  SUBMIT_REDUCE_JOB_BACKGROUND: 38,
  GRAB_JOB_ALL: 39,
  JOB_ASSIGN_ALL: 40,
  GET_STATUS_UNIQUE: 41,
  STATUS_RES_UNIQUE: 42,
} as const;

/**
 * A Gearman packet type number (1-42).
 *
 * @example Use as a parameter type
 * ```ts
 * import { PacketType } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * const t: PacketType = PacketType.NOOP;
 * assert.equal(t, 6);
 * ```
 */
export type PacketType = typeof PacketType[keyof typeof PacketType];

/**
 * The name of a packet type.
 *
 * @example Use as a parameter type
 * ```ts
 * import type { PacketTypeName } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * const name: PacketTypeName = "GRAB_JOB_UNIQ";
 * assert.equal(name.length, 13);
 * ```
 */
export type PacketTypeName = keyof typeof PacketType;

/** The highest packet type number known. */
export const MAX_PACKET_TYPE = 42;

const NAMES: readonly (PacketTypeName | undefined)[] = (() => {
  const names: (PacketTypeName | undefined)[] = new Array(MAX_PACKET_TYPE + 1);
  for (const [name, type] of Object.entries(PacketType)) names[type] = name as PacketTypeName;
  return names;
})();

/**
 * How many NUL-separated arguments each packet type carries (the last one
 * runs to the end of the body and may contain NUL bytes). Index by type.
 */
const ARG_COUNTS: readonly number[] = (() => {
  const counts: number[] = new Array(MAX_PACKET_TYPE + 1).fill(0);
  const set = (n: number, ...types: number[]) => {
    for (const t of types) counts[t] = n;
  };
  const T = PacketType;
  set(
    1,
    T.CAN_DO,
    T.CANT_DO,
    T.JOB_CREATED,
    T.WORK_FAIL,
    T.GET_STATUS,
    T.ECHO_REQ,
    T.ECHO_RES,
    T.SET_CLIENT_ID,
    T.OPTION_REQ,
    T.OPTION_RES,
    T.GET_STATUS_UNIQUE,
  );
  set(2, T.CAN_DO_TIMEOUT, T.ERROR, T.WORK_COMPLETE, T.WORK_EXCEPTION, T.WORK_DATA, T.WORK_WARNING);
  set(
    3,
    T.SUBMIT_JOB,
    T.SUBMIT_JOB_BG,
    T.SUBMIT_JOB_HIGH,
    T.SUBMIT_JOB_HIGH_BG,
    T.SUBMIT_JOB_LOW,
    T.SUBMIT_JOB_LOW_BG,
    T.JOB_ASSIGN,
    T.WORK_STATUS,
  );
  set(4, T.SUBMIT_JOB_EPOCH, T.JOB_ASSIGN_UNIQ);
  set(5, T.STATUS_RES, T.SUBMIT_REDUCE_JOB, T.SUBMIT_REDUCE_JOB_BACKGROUND, T.JOB_ASSIGN_ALL);
  set(6, T.STATUS_RES_UNIQUE);
  set(8, T.SUBMIT_JOB_SCHED);
  return counts;
})();

/**
 * The protocol name of a packet type number, or `undefined` when unknown.
 *
 * @param type The packet type number.
 * @returns The name, e.g. `"SUBMIT_JOB"`.
 *
 * @example Name a type
 * ```ts
 * import { packetTypeName } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * assert.equal(packetTypeName(9), "GRAB_JOB");
 * assert.equal(packetTypeName(99), undefined);
 * ```
 */
export function packetTypeName(type: number): PacketTypeName | undefined {
  return NAMES[type];
}

/**
 * How many arguments a packet type carries; 0 for types with no body
 * arguments (NOOP, GRAB_JOB...) and for unknown types.
 *
 * @param type The packet type number.
 * @returns The argument count.
 *
 * @example Count arguments
 * ```ts
 * import { packetArgCount, PacketType } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * assert.equal(packetArgCount(PacketType.SUBMIT_JOB), 3);
 * assert.equal(packetArgCount(PacketType.NOOP), 0);
 * ```
 */
export function packetArgCount(type: number): number {
  return ARG_COUNTS[type] ?? 0;
}
