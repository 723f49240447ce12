// The strict exposition parser used by the metrics tests must itself
// reject invalid text, or its "valid" verdicts mean nothing.

import assert from "node:assert/strict";
import { ExpositionError, parseExposition, valueOf } from "./_prom.ts";

Deno.test("prom parser: reads families, labels with escapes, histograms", () => {
  const text = [
    "# HELP a_total Help with \\\\ and \\n.",
    "# TYPE a_total counter",
    'a_total{function="x\\"y\\\\z\\nq",priority="high"} 3',
    "# TYPE h histogram",
    'h_bucket{le="0.5"} 1',
    'h_bucket{le="+Inf"} 2',
    "h_sum 1.5",
    "h_count 2",
    "",
  ].join("\n");
  const f = parseExposition(text);
  assert.equal(f.get("a_total")?.help, "Help with \\ and \n.");
  assert.equal(valueOf(f, "a_total", { function: 'x"y\\z\nq', priority: "high" }), 3);
  assert.equal(valueOf(f, "h_count"), 2);
  assert.equal(f.get("h")?.type, "histogram");
});

Deno.test("prom parser: rejects what Prometheus would reject", () => {
  const bad: [string, string | Uint8Array][] = [
    ["unterminated quote", 'a{x="y} 1\n'],
    ["bad escape", 'a{x="\\q"} 1\n'],
    ["value not a float", "a b\n"],
    ["second TYPE", "# TYPE a counter\n# TYPE a counter\n"],
    ["duplicate label", 'a{x="1",x="2"} 1\n'],
    ["bad name", "1a 2\n"],
    ["no final newline", "a 1"],
    ["duplicate series", "a 1\na 2\n"],
    ["not contiguous", 'a 1\nb 1\na{x="1"} 1\n'],
    ["TYPE after samples", "a 1\n# TYPE a gauge\n"],
    ["__ label", 'a{__x="1"} 1\n'],
    ["negative counter", "# TYPE a_total counter\na_total -1\n"],
    ["histogram without +Inf", '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'],
    [
      "histogram not cumulative",
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    ],
    [
      "histogram count differs",
      '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n',
    ],
    ["bare sample of a histogram", "# TYPE h histogram\nh 1\n"],
    [
      "not UTF-8",
      new Uint8Array([0x61, 0x7b, 0x78, 0x3d, 0x22, 0xff, 0x22, 0x7d, 0x20, 0x31, 0x0a]),
    ],
    ["carriage return", "a 1\r\n"],
  ];
  for (const [why, input] of bad) {
    assert.throws(() => parseExposition(input), ExpositionError, why);
  }
});
