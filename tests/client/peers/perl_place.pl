#!/usr/bin/perl
# Peer for tests/client/selection_test.ts: dispatch one background job per
# unique id to function "perlplace" with a Perl Gearman::Client given a list
# of servers, so the test can see which server each unique went to.
#
# usage: perl_place.pl HOST:PORT,HOST:PORT,... UNIQUE...
# A unique "-=DATA" is sent with uniq "-" and DATA as the argument.
use strict;
use warnings;
use Gearman::Client;

my ($servers, @uniques) = @ARGV;
die "usage: $0 HOST:PORT,... UNIQUE...\n" unless @uniques;
$| = 1;
$SIG{ALRM} = sub { print STDERR "perl_place: took over 15s\n"; exit 3 };
alarm 15;
my $client = Gearman::Client->new(job_servers => [split /,/, $servers]);
my $ok = 0;
for my $u (@uniques) {
    my ($uniq, $arg) = $u =~ /^-=(.*)$/ ? ("-", $1) : ($u, "x");
    my $h = $client->dispatch_background(perlplace => $arg, { uniq => $uniq });
    $ok++ if defined $h;
}
print "dispatched $ok\n";
exit 0;
