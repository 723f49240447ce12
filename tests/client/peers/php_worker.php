<?php
// Peer for tests/client/crosslang_test.ts: a PHP GearmanWorker (libgearman)
// serving test functions to our Client.
//
// usage: php php_worker.php HOST PORT [MAX_SECONDS]
//
//   rev        reverse the workload
//   uniq       "<unique>|<workload>"
//   status     sendStatus 1/N .. N/N, sendData "a", "b", return "done"
//   warn       sendWarning "careful", return "fine"
//   exception  sendException "php boom"
//   fail       sendFail
//   bg         print "bg <workload>", return "ok"
//   quit       return "bye" and stop
// Prints "ready" once registered and "jobs <count>" on exit; exits 3 after MAX_SECONDS.

if ($argc < 3) {
    fwrite(STDERR, "usage: php_worker.php HOST PORT [MAX_SECONDS]\n");
    exit(2);
}
[$_, $host, $port] = $argv;
$deadline = microtime(true) + (int)($argv[3] ?? 30);
$jobs = 0;
$quit = false;
$worker = new GearmanWorker();
$worker->addServer($host, (int)$port);
$worker->setTimeout(300);
$worker->addFunction("rev", function ($job) use (&$jobs) { $jobs++; return strrev($job->workload()); });
$worker->addFunction("uniq", function ($job) use (&$jobs) { $jobs++; return $job->unique() . "|" . $job->workload(); });
$worker->addFunction("status", function ($job) use (&$jobs) {
    $jobs++;
    $n = (int)$job->workload();
    for ($i = 1; $i <= $n; $i++) $job->sendStatus($i, $n);
    $job->sendData("a");
    $job->sendData("b");
    return "done";
});
$worker->addFunction("warn", function ($job) use (&$jobs) { $jobs++; $job->sendWarning("careful"); return "fine"; });
$worker->addFunction("exception", function ($job) use (&$jobs) { $jobs++; $job->sendException("php boom"); return null; });
$worker->addFunction("fail", function ($job) use (&$jobs) { $jobs++; $job->sendFail(); return null; });
$worker->addFunction("bg", function ($job) use (&$jobs) { $jobs++; echo "bg ", $job->workload(), "\n"; return "ok"; });
$worker->addFunction("quit", function ($job) use (&$jobs, &$quit) { $jobs++; $quit = true; return "bye"; });
echo "ready\n";
while (!$quit) {
    if (microtime(true) > $deadline) {
        fwrite(STDERR, "php_worker: no quit job in time\n");
        exit(3);
    }
    if (@$worker->work()) continue;
    $rc = $worker->returnCode();
    if (in_array($rc, [GEARMAN_TIMEOUT, GEARMAN_NO_JOBS, GEARMAN_IO_WAIT, GEARMAN_WORK_FAIL, GEARMAN_WORK_EXCEPTION], true)) continue;
    if ($rc == GEARMAN_COULD_NOT_CONNECT || $rc == GEARMAN_LOST_CONNECTION) { usleep(50000); continue; }
    fwrite(STDERR, "php_worker: work() failed: $rc " . $worker->error() . "\n");
    exit(1);
}
echo "jobs $jobs\n";
exit(0);
