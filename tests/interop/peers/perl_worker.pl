#!/usr/bin/perl
# Interop peer: a Perl Gearman::Worker serving test functions.
#
# usage: perl_worker.pl HOST PORT [MAX_SECONDS]
#
# Functions:
#   rev     reverse the argument
#   echo    return the argument unchanged (used with a 4 MiB payload)
#   fail    return undef, so the worker sends WORK_FAIL
#   status  send WORK_STATUS 1/N .. N/N (N = the argument), return "done"
#   data    send WORK_DATA "a", "b" and WORK_WARNING "careful", return "end"
#   bg      print "bg <argument>" on stdout (a side effect the test checks), return "ok"
#   quit    return "bye" and stop the worker
# On exit it prints "jobs <count>". It exits 3 after MAX_SECONDS (default 60).
use strict;
use warnings;
use Gearman::Worker;

my ($host, $port, $max_seconds) = @ARGV;
die "usage: $0 HOST PORT [MAX_SECONDS]\n" unless defined $port;
$max_seconds ||= 60;
$| = 1;

$SIG{ALRM} = sub { print STDERR "perl_worker: no quit job within ${max_seconds}s\n"; exit 3 };
alarm $max_seconds;

my $jobs = 0;
my $quit = 0;
my $worker = Gearman::Worker->new(job_servers => ["$host:$port"]);

$worker->register_function(rev => sub { $jobs++; return scalar reverse $_[0]->arg });
$worker->register_function(echo => sub { $jobs++; return $_[0]->arg });
$worker->register_function(fail => sub { $jobs++; return undef });
$worker->register_function(status => sub {
    my $job = shift;
    $jobs++;
    my $n = $job->arg;
    $job->set_status($_, $n) for 1 .. $n;
    return "done";
});
$worker->register_function(data => sub {
    my $job = shift;
    $jobs++;
    $worker->send_work_data($job, "a");
    $worker->send_work_data($job, "b");
    $worker->send_work_warning($job, "careful");
    return "end";
});
# Not "": Gearman::Worker sends WORK_COMPLETE without the NUL for a false
# result, which gearmand rejects (the job is then retried forever).
$worker->register_function(bg => sub { $jobs++; print "bg ", $_[0]->arg, "\n"; return "ok" });
$worker->register_function(quit => sub { $jobs++; $quit = 1; return "bye" });

$worker->work(stop_if => sub { $quit }) until $quit;
print "jobs $jobs\n";
exit 0;
