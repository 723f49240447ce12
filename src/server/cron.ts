// SUBMIT_JOB_SCHED times: the protocol's cron-like fields (minute 0-59,
// hour 0-23, day of month 1-31, month 1-12, day of week 0-6 with
// 0 = Monday). An empty field or "*" matches anything; a field may list
// values separated by commas. Times are the server's local time.

const RANGES: readonly [number, number][] = [[0, 59], [0, 23], [1, 31], [1, 12], [0, 6]];
/** How far ahead to look for a matching minute. */
const HORIZON_MS = 5 * 366 * 24 * 3600 * 1000;

/** Parse one field into a set of allowed values, or undefined for "any"; null when invalid. */
function parseField(text: string, [lo, hi]: [number, number]): Set<number> | undefined | null {
  const t = text.trim();
  if (t === "" || t === "*") return undefined;
  const out = new Set<number>();
  for (const part of t.split(",")) {
    if (!/^\d{1,2}$/.test(part)) return null;
    const v = Number(part);
    if (v < lo || v > hi) return null;
    out.add(v);
  }
  return out;
}

/**
 * The first time (ms since the epoch, local time) strictly after `now`
 * whose minute matches all five fields; undefined when a field is invalid
 * or nothing matches within five years.
 */
export function nextCronTime(fields: readonly string[], now: number): number | undefined {
  const sets: (Set<number> | undefined)[] = [];
  for (let i = 0; i < 5; i++) {
    const s = parseField(fields[i] ?? "", RANGES[i]!);
    if (s === null) return undefined;
    sets.push(s);
  }
  const [minutes, hours, mdays, months, wdays] = sets;
  const d = new Date(now);
  d.setSeconds(0, 0);
  d.setMinutes(d.getMinutes() + 1);
  const limit = now + HORIZON_MS;
  while (d.getTime() <= limit) {
    if (months && !months.has(d.getMonth() + 1)) {
      d.setMonth(d.getMonth() + 1, 1);
      d.setHours(0, 0, 0, 0);
      continue;
    }
    // JS: 0 = Sunday; Gearman: 0 = Monday.
    const wday = (d.getDay() + 6) % 7;
    if ((mdays && !mdays.has(d.getDate())) || (wdays && !wdays.has(wday))) {
      d.setDate(d.getDate() + 1);
      d.setHours(0, 0, 0, 0);
      continue;
    }
    if (hours && !hours.has(d.getHours())) {
      d.setHours(d.getHours() + 1, 0, 0, 0);
      continue;
    }
    if (minutes && !minutes.has(d.getMinutes())) {
      d.setMinutes(d.getMinutes() + 1, 0, 0);
      continue;
    }
    return d.getTime();
  }
  return undefined;
}
