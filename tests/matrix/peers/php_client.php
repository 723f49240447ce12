<?php
// Matrix driver: PHP's GearmanClient (pecl gearman over C libgearman) runs the
// six matrix checks and prints one JSON line per check; matrix_test.ts judges.
//
// usage: php php_client.php CONFIG_JSON

if ($argc < 2) {
    fwrite(STDERR, "usage: php_client.php CONFIG_JSON\n");
    exit(2);
}
$cfg = json_decode($argv[1], true);

function client(array $cfg): GearmanClient
{
    $c = new GearmanClient();
    $c->addServer($cfg["host"], (int)$cfg["port"]);
    $c->setTimeout((int)$cfg["timeoutMs"]);
    return $c;
}

function large_payload(int $size): string
{
    $block = "";
    for ($i = 0; $i < 251; $i++) $block .= chr($i);
    return substr(str_repeat($block, intdiv($size, 251) + 1), 0, $size);
}

function emit(string $check, array $obs): void
{
    echo json_encode(["check" => $check] + $obs), "\n";
}

$checks = [
    "submit" => function (array $cfg): array {
        $c = client($cfg);
        $r = $c->doNormal($cfg["fn"]["rev"], $cfg["submitData"]);
        if ($c->returnCode() != GEARMAN_SUCCESS) return ["error" => "doNormal: rc " . $c->returnCode() . " " . $c->error()];
        return ["result" => $r];
    },
    "background" => function (array $cfg): array {
        $c = client($cfg);
        $h = $c->doBackground($cfg["fn"]["bg"], $cfg["bgData"]);
        if ($c->returnCode() != GEARMAN_SUCCESS) return ["error" => "doBackground: rc " . $c->returnCode() . " " . $c->error()];
        return ["handle" => $h];
    },
    "status" => function (array $cfg): array {
        $c = client($cfg);
        $h = $c->doBackground($cfg["fn"]["idle"], "queued");
        if ($c->returnCode() != GEARMAN_SUCCESS) return ["error" => "doBackground: rc " . $c->returnCode() . " " . $c->error()];
        $q = $c->jobStatus($h);
        $u = $c->jobStatus($cfg["unknownHandle"]);
        return [
            "queued" => ["known" => $q[0], "running" => $q[1]],
            "unknown" => ["known" => $u[0], "running" => $u[1]],
        ];
    },
    "fail" => function (array $cfg): array {
        $c = client($cfg);
        $r = $c->doNormal($cfg["fn"]["fail"], "x");
        return ["failed" => $c->returnCode() == GEARMAN_WORK_FAIL, "detail" => "rc " . $c->returnCode() . " result " . json_encode($r)];
    },
    "exception" => function (array $cfg): array {
        // The task API hands the exception text to a callback (libgearman sends OPTION_REQ exceptions).
        $c = client($cfg);
        $seen = [];
        $c->setExceptionCallback(function (GearmanTask $t) use (&$seen) { $seen[] = ["exception", $t->data()]; });
        $c->setFailCallback(function (GearmanTask $t) use (&$seen) { $seen[] = ["fail", null]; });
        $c->setCompleteCallback(function (GearmanTask $t) use (&$seen) { $seen[] = ["complete", $t->data()]; });
        $c->addTask($cfg["fn"]["exc"], "x");
        $ok = $c->runTasks();
        foreach ($seen as [$kind, $data]) {
            if ($kind === "exception") return ["exception" => $data];
        }
        return ["failed" => in_array(["fail", null], $seen, true), "detail" => json_encode($seen) . " runTasks " . json_encode($ok) . " rc " . $c->returnCode()];
    },
    "large" => function (array $cfg): array {
        $c = client($cfg);
        $r = $c->doNormal($cfg["fn"]["echo"], large_payload((int)$cfg["largeSize"]));
        if ($c->returnCode() != GEARMAN_SUCCESS) return ["error" => "doNormal: rc " . $c->returnCode() . " " . $c->error()];
        return ["length" => strlen($r), "sha256" => hash("sha256", $r)];
    },
];

foreach ($checks as $name => $check) {
    try {
        emit($name, $check($cfg));
    } catch (Throwable $e) {
        emit($name, ["error" => get_class($e) . ": " . $e->getMessage()]);
    }
}
exit(0);
