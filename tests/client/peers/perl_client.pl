#!/usr/bin/perl
# Peer for tests/client/crosslang_test.ts: a Perl Gearman::Client using
# functions served by our Worker; prints one JSON object (sorted keys).
#
# usage: perl_client.pl HOST PORT [nothrow]
#
# "nothrow" skips the throws job: C++ gearmand turns WORK_EXCEPTION into a
# WORK_FAIL with a trailing NUL for clients without the exceptions option,
# and Gearman::Client dies on that handle.
#
# Our worker serves: rev (reverse), uniq ("<unique>|<data>"), progress
# (WORK_STATUS 1/3..3/3, result "done"), throws (throws "deno boom"),
# bg (records the data).
use strict;
use warnings;
use Gearman::Client;
use JSON::PP;

my ($host, $port, $nothrow) = @ARGV;
die "usage: $0 HOST PORT\n" unless defined $port;
$| = 1;
$SIG{ALRM} = sub { print STDERR "perl_client: took over 20s\n"; exit 3 };
alarm 20;

my $client = Gearman::Client->new(job_servers => ["$host:$port"], command_timeout => 10);
my $t = 10;
sub deref { my $r = shift; return defined $r ? $$r : undef }
my %out;

$out{normal} = deref($client->do_task(rev => "hello", { timeout => $t }));
$out{high} = deref($client->do_task(rev => "high", { priority => "high", timeout => $t }));
$out{uniq} = deref($client->do_task(uniq => "payload", { uniq => "perl-u1", timeout => $t }));
my @status;
$out{progress} = deref($client->do_task(progress => "x", {
    timeout => $t,
    on_status => sub { push @status, "$_[0]/$_[1]" },
}));
$out{status} = \@status;
unless ($nothrow) {
    my $fails = 0;
    my $ret = $client->do_task(throws => "x", { timeout => $t, on_fail => sub { $fails++ } });
    $out{throws} = { defined => defined $ret ? JSON::PP::true : JSON::PP::false, on_fail => $fails };
}
my @handles;
push @handles, $client->dispatch_background(bg => "perl-bg-$_") for 1 .. 3;
$out{bg_handles} = scalar grep { defined $_ && m{//H:} } @handles;
my $ts = $client->new_task_set;
my ($ok, $bad) = (0, 0);
for my $i (1 .. 100) {
    my $arg = "t$i";
    my $want = reverse $arg;
    $ts->add_task(rev => $arg, {
        on_complete => sub { ${ $_[0] } eq $want ? $ok++ : $bad++ },
        on_fail => sub { $bad++ },
    });
}
$ts->wait(timeout => $t);
$out{taskset} = { ok => $ok, bad => $bad };
print JSON::PP->new->canonical->encode(\%out), "\n";
exit 0;
