<?php
// Interop peer: a PHP GearmanWorker (libgearman) serving test functions.
//
// usage: php php_worker.php HOST PORT [MAX_JOBS] [MAX_SECONDS]
//
// Prints "ran <function> <workload>" for each job as it starts it, and
// stops after MAX_JOBS jobs (0: only at a quit job).
//
// Functions:
//   rev        reverse the workload
//   uniq       return "<unique>|<workload>" (the unique id the worker got)
//   fail       $job->sendFail() (WORK_FAIL to the client)
//   fail_ret   $job->setReturn(GEARMAN_WORK_FAIL) (WORK_FAIL the other way)
//   status     sendStatus 1/N .. N/N and sendData "a","b", then return "done"
//   bg         return "ok" (background jobs: the "ran" line is the side effect)
//   exception  sendException("boom") (WORK_EXCEPTION)
//   warn       sendWarning("careful"), then return "fine"
//   quit       return "bye" and stop
// On exit it prints "jobs <count>". It exits 3 after MAX_SECONDS (default 60).
// Functions are registered in this order: rev uniq fail fail_ret status bg
// exception warn quit.

if ($argc < 3) {
    fwrite(STDERR, "usage: php_worker.php HOST PORT [MAX_JOBS] [MAX_SECONDS]\n");
    exit(2);
}
[$_, $host, $port] = $argv;
$maxJobs = (int)($argv[3] ?? 0);
$maxSeconds = (int)($argv[4] ?? 60);
$deadline = microtime(true) + $maxSeconds;

$jobs = 0;
$quit = false;

$worker = new GearmanWorker();
$worker->addServer($host, (int)$port);
$worker->setTimeout(500);

function ran(GearmanJob $job): void
{
    echo "ran ", $job->functionName(), " ", $job->workload(), "\n";
}

$worker->addFunction("rev", function (GearmanJob $job) use (&$jobs) {
    $jobs++;
    ran($job);
    return strrev($job->workload());
});
$worker->addFunction("uniq", function (GearmanJob $job) use (&$jobs) {
    $jobs++;
    ran($job);
    return $job->unique() . "|" . $job->workload();
});
$worker->addFunction("fail", function (GearmanJob $job) use (&$jobs) {
    $jobs++;
    ran($job);
    $job->sendFail();
    return null;
});
$worker->addFunction("fail_ret", function (GearmanJob $job) use (&$jobs) {
    $jobs++;
    ran($job);
    $job->setReturn(GEARMAN_WORK_FAIL);
    return null;
});
$worker->addFunction("status", function (GearmanJob $job) use (&$jobs) {
    $jobs++;
    ran($job);
    $n = (int)$job->workload();
    for ($i = 1; $i <= $n; $i++) $job->sendStatus($i, $n);
    $job->sendData("a");
    $job->sendData("b");
    return "done";
});
$worker->addFunction("bg", function (GearmanJob $job) use (&$jobs) {
    $jobs++;
    ran($job);
    return "ok";
});
$worker->addFunction("exception", function (GearmanJob $job) use (&$jobs) {
    $jobs++;
    ran($job);
    $job->sendException("boom");
    return null;
});
$worker->addFunction("warn", function (GearmanJob $job) use (&$jobs) {
    $jobs++;
    ran($job);
    $job->sendWarning("careful");
    return "fine";
});
$worker->addFunction("quit", function (GearmanJob $job) use (&$jobs, &$quit) {
    $jobs++;
    ran($job);
    $quit = true;
    return "bye";
});

while (!$quit && ($maxJobs == 0 || $jobs < $maxJobs)) {
    if (microtime(true) > $deadline) {
        fwrite(STDERR, "php_worker: no quit job within {$maxSeconds}s\n");
        exit(3);
    }
    if (@$worker->work()) continue;
    $rc = $worker->returnCode();
    // A failed job leaves its code behind: work() "fails" but the worker is fine.
    if (in_array($rc, [GEARMAN_TIMEOUT, GEARMAN_NO_JOBS, GEARMAN_IO_WAIT, GEARMAN_WORK_FAIL, GEARMAN_WORK_EXCEPTION], true)) {
        continue;
    }
    if ($rc == GEARMAN_COULD_NOT_CONNECT || $rc == GEARMAN_LOST_CONNECTION) {
        usleep(50000);
        continue;
    }
    fwrite(STDERR, "php_worker: work() failed: $rc " . $worker->error() . "\n");
    exit(1);
}
echo "jobs $jobs\n";
exit(0);
