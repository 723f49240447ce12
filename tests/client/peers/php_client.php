<?php
// Peer for tests/client/crosslang_test.ts: a PHP GearmanClient (libgearman)
// using functions served by our Worker; prints one JSON object.
//
// usage: php php_client.php HOST PORT
//
// Our worker serves: rev, uniq ("<unique>|<data>"), updates (WORK_STATUS
// 1/2, WORK_DATA "x", WORK_WARNING "w", WORK_STATUS 2/2, result "done"),
// throws (throws "deno boom"), bg (records the data).

if ($argc < 3) {
    fwrite(STDERR, "usage: php_client.php HOST PORT\n");
    exit(2);
}
[$_, $host, $port] = $argv;
$client = new GearmanClient();
$client->addServer($host, (int)$port);
$client->setTimeout(10000);
$ok = fn () => $client->returnCode() == GEARMAN_SUCCESS;

$out = [];
$out["normal"] = [$client->doNormal("rev", "hello"), $ok()];
$out["high"] = [$client->doHigh("rev", "high"), $ok()];
$out["low"] = [$client->doLow("rev", "low"), $ok()];
$out["uniq"] = [$client->doNormal("uniq", "payload", "php-u1"), $ok()];
$h = [];
foreach ([1, 2, 3] as $i) $h[] = $client->doBackground("bg", "php-bg-$i");
$out["bg_handles"] = count(array_filter($h, fn ($x) => is_string($x) && str_starts_with($x, "H:")));
$r = @$client->doNormal("throws", "x");
$out["throws_rc"] = $client->returnCode() == GEARMAN_WORK_EXCEPTION ? "exception"
    : ($client->returnCode() == GEARMAN_WORK_FAIL ? "fail" : "rc" . $client->returnCode());

$events = [];
$client->setStatusCallback(function ($t) use (&$events) { $events[] = "status " . $t->taskNumerator() . "/" . $t->taskDenominator(); });
$client->setDataCallback(function ($t) use (&$events) { $events[] = "data " . $t->data(); });
$client->setWarningCallback(function ($t) use (&$events) { $events[] = "warning " . $t->data(); });
$client->setCompleteCallback(function ($t) use (&$events) { $events[] = "complete " . $t->functionName() . " " . $t->data(); });
$client->setExceptionCallback(function ($t) use (&$events) { $events[] = "exception " . $t->data(); });
$client->setFailCallback(function ($t) use (&$events) { $events[] = "fail " . $t->functionName(); });
$client->addTask("updates", "u");
$out["run_tasks"] = $client->runTasks();
$client->addTask("throws", "y");
@$client->runTasks();
$out["events"] = $events;
echo json_encode($out), "\n";
exit(0);
