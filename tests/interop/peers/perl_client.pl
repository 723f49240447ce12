#!/usr/bin/perl
# Interop peer: a Perl Gearman::Client running one scenario and printing
# one JSON object (canonical: sorted keys) on stdout.
#
# usage: perl_client.pl HOST PORT SCENARIO
#
# Scenarios (functions are served by perl_worker.pl):
#   do_task     do_task rev/normal, rev/high, rev/low
#   fail        do_task on a job the worker fails: undef result, on_fail called
#   big         a 4 MiB payload through echo: length and MD5 of what comes back
#   status      on_status sees each WORK_STATUS; on_data/on_warning see WORK_DATA/WARNING
#   taskset     200 tasks in one taskset, all completing with the right result
#   background  dispatch_background 5 bg jobs (the worker prints them)
#   get_status  get_status of a queued background job and of an unknown handle
#   quit        do_task quit (stops the worker)
use strict;
use warnings;
use Gearman::Client;
use Gearman::Task;
use JSON::PP;
use Digest::MD5 qw(md5_hex);

my ($host, $port, $scenario) = @ARGV;
die "usage: $0 HOST PORT SCENARIO\n" unless defined $scenario;
$| = 1;
$SIG{ALRM} = sub { print STDERR "perl_client: scenario $scenario took over 25s\n"; exit 3 };
alarm 25;

my $client = Gearman::Client->new(job_servers => ["$host:$port"], command_timeout => 15);
my $timeout = 15;
my %out;

sub deref { my $r = shift; return defined $r ? $$r : undef }

if ($scenario eq "do_task") {
    $out{normal} = deref($client->do_task(rev => "hello", { timeout => $timeout }));
    $out{high} = deref($client->do_task(rev => "high", { priority => "high", timeout => $timeout }));
    $out{low} = deref($client->do_task(rev => "low", { priority => "low", timeout => $timeout }));
    $out{uniq} = deref($client->do_task(rev => "uniq", { uniq => "u-1", timeout => $timeout }));
}
elsif ($scenario eq "fail") {
    my @fail_args;
    my $completed = 0;
    my $ret = $client->do_task(fail => "x", {
        timeout => $timeout,
        on_fail => sub { push @fail_args, defined $_[0] ? $_[0] : "undef" },
        on_complete => sub { $completed++ },
    });
    $out{result_defined} = defined $ret ? JSON::PP::true : JSON::PP::false;
    $out{on_fail_calls} = scalar @fail_args;
    $out{on_complete_calls} = $completed;
}
elsif ($scenario eq "big") {
    # 4 MiB of deterministic, non-repeating-looking bytes (all 256 values).
    my $payload = "";
    my $x = 12345;
    my @chunk;
    for my $i (0 .. 65535) {
        $x = ($x * 1103515245 + 12345) & 0x7fffffff;
        push @chunk, $x >> 16 & 0xff;
    }
    my $block = pack("C*", @chunk);
    $payload .= $block for 1 .. 64;
    my $sent_md5 = md5_hex($payload);
    my $ret = $client->do_task(echo => \$payload, { timeout => $timeout });
    $out{sent_length} = length $payload;
    $out{length} = defined $ret ? length($$ret) : -1;
    $out{intact} = (defined $ret && md5_hex($$ret) eq $sent_md5) ? JSON::PP::true : JSON::PP::false;
}
elsif ($scenario eq "status") {
    my @status;
    my $ret = $client->do_task(status => "4", {
        timeout => $timeout,
        on_status => sub { push @status, "$_[0]/$_[1]" },
    });
    $out{status} = \@status;
    $out{result} = deref($ret);
    my (@data, @warnings);
    my $ret2 = $client->do_task(data => "", {
        timeout => $timeout,
        on_data => sub { push @data, ${ $_[0] } },
        on_warning => sub { push @warnings, ref $_[0] ? ${ $_[0] } : $_[0] },
    });
    $out{data} = \@data;
    $out{warnings} = \@warnings;
    $out{data_result} = deref($ret2);
}
elsif ($scenario eq "taskset") {
    my $ts = $client->new_task_set;
    my ($completed, $correct, $failed) = (0, 0, 0);
    for my $i (1 .. 200) {
        my $arg = "task-$i";
        my $want = reverse $arg;
        $ts->add_task(rev => $arg, {
            on_complete => sub { $completed++; $correct++ if ${ $_[0] } eq $want },
            on_fail => sub { $failed++ },
        });
    }
    $ts->wait(timeout => $timeout);
    $out{completed} = $completed;
    $out{correct} = $correct;
    $out{failed} = $failed;
}
elsif ($scenario eq "background") {
    my @handles;
    for my $i (1 .. 5) {
        push @handles, $client->dispatch_background(bg => "job-$i", { uniq => "bg-$i" });
    }
    $out{handles} = scalar grep { defined $_ && m{^\Q$host:$port\E//H:} } @handles;
}
elsif ($scenario eq "get_status") {
    my $handle = $client->dispatch_background(nobody => "x", { uniq => "st-1" });
    my $st = $client->get_status($handle);
    $out{queued} = $st ? {
        known => $st->known ? JSON::PP::true : JSON::PP::false,
        running => $st->running ? JSON::PP::true : JSON::PP::false,
        percent => $st->percent,
    } : undef;
    my $unknown = $client->get_status("$host:$port//H:nosuchhost:999999");
    $out{unknown} = $unknown ? {
        known => $unknown->known ? JSON::PP::true : JSON::PP::false,
        running => $unknown->running ? JSON::PP::true : JSON::PP::false,
    } : undef;
}
elsif ($scenario eq "quit") {
    $out{result} = deref($client->do_task(quit => "", { timeout => $timeout }));
}
else {
    die "perl_client: unknown scenario $scenario\n";
}

print JSON::PP->new->canonical->encode(\%out), "\n";
exit 0;
