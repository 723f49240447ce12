<?php
// Interop peer: a PHP GearmanClient (libgearman) running one scenario and
// printing one JSON object on stdout.
//
// usage: php php_client.php HOST PORT SCENARIO
//
// Scenarios (functions are served by php_worker.php):
//   do              doNormal / doHigh / doLow: results and return codes
//   unique          doNormal with a unique id: the worker sees it
//   background      doBackground / doHighBackground / doLowBackground (worker prints them)
//   fail            jobs the worker fails: returnCode GEARMAN_WORK_FAIL
//   status          WORK_STATUS/WORK_DATA: doNormal's result, and runTasks callbacks
//   exception       WORK_EXCEPTION and WORK_WARNING: doNormal's return code, runTasks callbacks
//   mixed           background jobs on several functions and priorities (worker prints the order)
//   unknown_status  jobStatus of a handle the server never issued
//   queued_status   jobStatus of a queued background job no worker serves
//   quit            doLow quit (stops the worker after every other queued job)

if ($argc < 4) {
    fwrite(STDERR, "usage: php_client.php HOST PORT SCENARIO\n");
    exit(2);
}
[$_, $host, $port, $scenario] = $argv;

$client = new GearmanClient();
$client->addServer($host, (int)$port);
$client->setTimeout(15000);

function rc_name(int $rc): string
{
    static $names = null;
    if ($names === null) {
        $names = [];
        foreach (get_defined_constants(true)["gearman"] as $k => $v) {
            if (is_int($v) && !isset($names[$v]) && preg_match('/^GEARMAN_(SUCCESS|IO_WAIT|WORK_|TIMEOUT|LOST_|COULD_NOT|UNKNOWN_STATE|NO_|INVALID|SERVER_ERROR|ERRNO|ECHO|ARGUMENT|PAUSE|JOB_)/', $k)) {
                $names[$v] = $k;
            }
        }
    }
    return $names[$rc] ?? "rc$rc";
}

$out = [];
switch ($scenario) {
    case "do":
        foreach (["normal" => "doNormal", "high" => "doHigh", "low" => "doLow"] as $key => $method) {
            $result = $client->$method("rev", "php-$key");
            $out[$key] = ["result" => $result, "rc" => rc_name($client->returnCode())];
        }
        break;
    case "unique":
        $result = $client->doNormal("uniq", "payload", "my-unique-1");
        $out = ["result" => $result, "rc" => rc_name($client->returnCode())];
        break;
    case "background":
        $handles = [];
        $handles[] = $client->doBackground("bg", "normal-1", "bg-u1");
        $rcs[] = rc_name($client->returnCode());
        $handles[] = $client->doHighBackground("bg", "high-1", "bg-u2");
        $rcs[] = rc_name($client->returnCode());
        $handles[] = $client->doLowBackground("bg", "low-1", "bg-u3");
        $rcs[] = rc_name($client->returnCode());
        $handles[] = $client->doBackground("bg", "normal-2");
        $rcs[] = rc_name($client->returnCode());
        $out["handles"] = count(array_filter($handles, fn ($h) => is_string($h) && str_starts_with($h, "H:")));
        $out["rcs"] = $rcs;
        break;
    case "fail":
        foreach (["fail", "fail_ret"] as $fn) {
            $result = $client->doNormal($fn, "x");
            $out[$fn] = ["result" => $result, "rc" => rc_name($client->returnCode())];
        }
        break;
    case "status":
        // doNormal hands back the data and result concatenated.
        $result = $client->doNormal("status", "3");
        $out["do_normal"] = ["result" => $result, "rc" => rc_name($client->returnCode())];
        // addTask + runTasks delivers each update to a callback.
        // Events by function: the two tasks may run in either order.
        $events = [];
        $client->setStatusCallback(function (GearmanTask $t) use (&$events) {
            $events[$t->functionName()][] = "status " . $t->taskNumerator() . "/" . $t->taskDenominator();
        });
        $client->setDataCallback(function (GearmanTask $t) use (&$events) {
            $events[$t->functionName()][] = "data " . $t->data();
        });
        $client->setCompleteCallback(function (GearmanTask $t) use (&$events) {
            $events[$t->functionName()][] = "complete " . $t->data();
        });
        $client->setFailCallback(function (GearmanTask $t) use (&$events) {
            $events[$t->functionName()][] = "fail";
        });
        $client->addTask("status", "4");
        $client->addTask("fail", "x");
        $ok = $client->runTasks();
        ksort($events);
        $out["events"] = $events;
        $out["run_tasks"] = $ok;
        break;
    case "exception":
        // doNormal: libgearman asks for exceptions (OPTION_REQ) itself.
        $result = $client->doNormal("exception", "x");
        $out["do_exception"] = ["result" => $result, "rc" => rc_name($client->returnCode())];
        $result = $client->doNormal("warn", "x");
        $out["do_warn"] = ["result" => $result, "rc" => rc_name($client->returnCode())];
        $events = [];
        foreach (["Exception", "Warning", "Fail", "Complete"] as $kind) {
            $client->{"set{$kind}Callback"}(function (GearmanTask $t) use (&$events, $kind) {
                $events[$t->functionName()][] = strtolower($kind) . " " . $t->data();
            });
        }
        $client->addTask("exception", "y");
        $client->addTask("warn", "y");
        $out["run_tasks"] = $client->runTasks();
        ksort($events);
        $out["events"] = $events;
        break;
    case "mixed":
        // Background jobs on three functions at three priorities, queued
        // before any worker connects; the worker prints the order it gets them.
        $submit = [
            ["doLowBackground", "bg", "bg-low"],
            ["doBackground", "rev", "rev-normal"],
            ["doHighBackground", "bg", "bg-high"],
            ["doBackground", "bg", "bg-normal"],
            ["doLowBackground", "rev", "rev-low"],
            ["doHighBackground", "uniq", "uniq-high"],
        ];
        $ok = 0;
        foreach ($submit as [$method, $fn, $workload]) {
            $h = $client->$method($fn, $workload);
            if ($client->returnCode() == GEARMAN_SUCCESS && is_string($h) && $h !== "") $ok++;
        }
        $out["submitted"] = $ok;
        break;
    case "unknown_status":
        $out["status"] = $client->jobStatus("H:nosuchhost:999999");
        $out["rc"] = rc_name($client->returnCode());
        break;
    case "queued_status":
        $handle = $client->doBackground("nobody", "x", "queued-1");
        $out["status"] = $client->jobStatus($handle);
        $out["rc"] = rc_name($client->returnCode());
        break;
    case "quit":
        $result = $client->doLow("quit", "now");
        $out = ["result" => $result, "rc" => rc_name($client->returnCode())];
        break;
    default:
        fwrite(STDERR, "php_client: unknown scenario $scenario\n");
        exit(2);
}
echo json_encode($out), "\n";
exit(0);
