// Unit tests of the exposition writer and the byte-string text helpers.

import assert from "node:assert/strict";
import {
  escapeHelp,
  escapeLabelValue,
  ExpositionWriter,
  formatValue,
} from "../../src/http/exposition.ts";
import {
  displayText,
  isUtf8,
  percentDecode,
  percentEncode,
  queryParam,
} from "../../src/http/byte_text.ts";
import { quantile } from "../../src/http/observe.ts";
import { Histogram } from "../../src/server/job_metrics.ts";
import { parseExposition, valueOf } from "./_prom.ts";

const bytes = (...b: number[]) => String.fromCharCode(...b);

Deno.test("exposition: label values and help are escaped as the format says", () => {
  assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assert.equal(escapeHelp('a\\b"c\nd'), 'a\\\\b"c\\nd');
  assert.equal(formatValue(Infinity), "+Inf");
  assert.equal(formatValue(-Infinity), "-Inf");
  assert.equal(formatValue(NaN), "NaN");
  assert.equal(formatValue(0.0005), "0.0005");
  assert.equal(formatValue(1e21), "1e+21");
});

Deno.test("exposition: the writer's output parses back to what was written", () => {
  const w = new ExpositionWriter();
  w.family("t_total", "counter", 'Help "quoted" \\ and\nnewline.');
  w.sample("t_total", { a: 'x"\\\ny', b: "✓" }, 2);
  w.family("h_seconds", "histogram", "A histogram.");
  w.histogram({ f: "x" }, [0.1, 1], [1, 2, 3], 9.5);
  const f = parseExposition(w.text());
  assert.equal(f.get("t_total")?.help, 'Help "quoted" \\ and\nnewline.');
  assert.equal(valueOf(f, "t_total", { a: 'x"\\\ny', b: "✓" }), 2);
  assert.equal(valueOf(f, "h_seconds_bucket", { f: "x", le: "0.1" }), 1);
  assert.equal(valueOf(f, "h_seconds_bucket", { f: "x", le: "1" }), 3);
  assert.equal(valueOf(f, "h_seconds_bucket", { f: "x", le: "+Inf" }), 6);
  assert.equal(valueOf(f, "h_seconds_count", { f: "x" }), 6);
  assert.equal(valueOf(f, "h_seconds_sum", { f: "x" }), 9.5);
});

Deno.test("exposition: the writer refuses invalid names and misplaced samples", () => {
  const w = new ExpositionWriter();
  assert.throws(() => w.family("1bad", "gauge", "x"), TypeError);
  assert.throws(() => w.sample("a", undefined, 1), TypeError);
  w.family("a", "gauge", "x");
  assert.throws(() => w.family("a", "gauge", "x"), TypeError);
  assert.throws(() => w.sample("b", undefined, 1), TypeError);
  assert.throws(() => w.sample("a", { "bad-label": "x" }, 1), TypeError);
  assert.throws(() => w.sample("a", { __reserved: "x" }, 1), TypeError);
  assert.throws(() => w.histogram(undefined, [1], [1, 2], 1), TypeError);
  w.family("h", "histogram", "x");
  assert.throws(() => w.histogram(undefined, [1], [1], 1), TypeError);
});

Deno.test("byte text: UTF-8 names show as text, other bytes as \\xNN", () => {
  assert.equal(displayText("plain"), "plain");
  assert.equal(displayText(bytes(0x72, 0xc3, 0xa9)), "ré");
  assert.equal(displayText(bytes(0xf0, 0x9f, 0x98, 0x80)), "😀");
  assert.equal(displayText(bytes(0x61, 0xff, 0x62)), "a\\xffb");
  assert.equal(displayText(bytes(0xc3)), "\\xc3"); // truncated sequence
  assert.equal(displayText(bytes(0xc0, 0x80)), "\\xc0\\x80"); // overlong
  assert.equal(displayText(bytes(0xed, 0xa0, 0x80)), "\\xed\\xa0\\x80"); // surrogate
  assert.equal(displayText(bytes(0xe2, 0x82, 0xac, 0xff)), "€\\xff");
  assert.ok(isUtf8(bytes(0xc3, 0xa9)));
  assert.ok(!isUtf8(bytes(0xff)));
});

Deno.test("byte text: percent-encoding round-trips every byte", () => {
  let all = "";
  for (let b = 0; b < 256; b++) all += String.fromCharCode(b);
  const encoded = percentEncode(all);
  assert.match(encoded, /^[A-Za-z0-9%._~-]+$/);
  assert.equal(percentDecode(encoded), all);
  assert.equal(percentDecode("r%C3%A9"), bytes(0x72, 0xc3, 0xa9));
  assert.equal(percentDecode("ré"), bytes(0x72, 0xc3, 0xa9)); // raw UTF-8 in a URL
  assert.equal(percentDecode("%zz"), undefined);
  assert.equal(percentDecode("%4"), undefined);
  assert.equal(queryParam("?a=1&function=f%FF+x&b", "function"), bytes(0x66, 0xff, 0x20, 0x78));
  assert.equal(queryParam("?a=1", "function"), undefined);
  assert.equal(queryParam("", "function"), undefined);
});

Deno.test("quantiles are estimated from buckets as histogram_quantile does", () => {
  const h = new Histogram();
  assert.equal(quantile(h, 0.5), null);
  for (let i = 0; i < 10; i++) h.observe(0.003); // bucket (0.0025, 0.005]
  assert.ok(Math.abs(quantile(h, 0.5)! - 0.00375) < 1e-12);
  h.observe(1000); // +Inf bucket: the highest finite bound
  assert.equal(quantile(h, 1), 300);
});
