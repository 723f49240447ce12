#!/usr/bin/perl
# Peer for tests/client/crosslang_test.ts: a Perl Gearman::Worker serving
# test functions to our Client.
#
# usage: perl_worker.pl HOST PORT [MAX_SECONDS]
#
#   rev     reverse the argument
#   status  set_status 1/N .. N/N (N = the argument), return "done"
#   data    WORK_DATA "a", "b", WORK_WARNING "careful", return "end"
#   fail    return undef (WORK_FAIL)
#   die     die "perl boom" (WORK_EXCEPTION with a Storable blob, then WORK_FAIL;
#           the servers answer the second with ERROR, after which this
#           Gearman::Worker takes no more jobs: call it last)
#   bg      print "bg <argument>" on stdout, return "ok"
#   quit    return "bye" and exit
# Prints "ready" once registered, "jobs <count>" on exit; exits 3 after MAX_SECONDS.
use strict;
use warnings;
use Gearman::Worker;

my ($host, $port, $max_seconds) = @ARGV;
die "usage: $0 HOST PORT [MAX_SECONDS]\n" unless defined $port;
$max_seconds ||= 30;
$| = 1;
$SIG{ALRM} = sub { print STDERR "perl_worker: no quit job within ${max_seconds}s\n"; exit 3 };
alarm $max_seconds;

my $jobs = 0;
my $quit = 0;
my $worker = Gearman::Worker->new(job_servers => ["$host:$port"]);
$worker->register_function(rev => sub { $jobs++; return scalar reverse $_[0]->arg });
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
$worker->register_function(fail => sub { $jobs++; return undef });
$worker->register_function(die => sub { $jobs++; die "perl boom\n" });
$worker->register_function(bg => sub { $jobs++; print "bg ", $_[0]->arg, "\n"; return "ok" });
$worker->register_function(quit => sub { $jobs++; $quit = 1; return "bye" });
print "ready\n";
$worker->work(stop_if => sub { $quit }) until $quit;
print "jobs $jobs\n";
exit 0;
