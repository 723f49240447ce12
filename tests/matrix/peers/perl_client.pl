#!/usr/bin/perl
# Matrix driver: Perl's Gearman::Client runs the six matrix checks and prints
# one JSON line per check; matrix_test.ts judges.
#
# usage: perl perl_client.pl CONFIG_JSON
use strict;
use warnings;
use Gearman::Client;
use JSON::PP;
use Digest::SHA qw(sha256_hex);

die "usage: $0 CONFIG_JSON\n" unless @ARGV == 1;
my $cfg = decode_json($ARGV[0]);
my ($host, $port, $fn) = ($cfg->{host}, $cfg->{port}, $cfg->{fn});
my $timeout = $cfg->{timeoutMs} / 1000;
$| = 1;

sub client {
    my %opts = @_;
    return Gearman::Client->new(job_servers => ["$host:$port"], command_timeout => $timeout, %opts);
}

sub large_payload {
    my $size = shift;
    my $block = join "", map { chr } 0 .. 250;
    return substr($block x (int($size / 251) + 1), 0, $size);
}

my %checks = (
    submit => sub {
        my $r = client()->do_task($fn->{rev} => $cfg->{submitData}, { timeout => $timeout });
        return defined $r ? { result => $$r } : { error => "do_task returned undef" };
    },
    background => sub {
        my $h = client()->dispatch_background($fn->{bg} => $cfg->{bgData});
        return defined $h ? { handle => $h } : { error => "dispatch_background returned undef" };
    },
    status => sub {
        my $c = client();
        my $h = $c->dispatch_background($fn->{idle} => "queued")
            or return { error => "dispatch_background returned undef" };
        my $ask = sub {
            my $st = $c->get_status(shift);
            return { error => "get_status returned undef" } unless $st;
            return { known => $st->known ? JSON::PP::true : JSON::PP::false,
                     running => $st->running ? JSON::PP::true : JSON::PP::false };
        };
        return { queued => $ask->($h), unknown => $ask->("$host:$port//$cfg->{unknownHandle}") };
    },
    fail => sub {
        my @failed;
        my $r = client()->do_task($fn->{fail} => "x", {
            timeout => $timeout,
            on_fail => sub { push @failed, defined $_[0] ? $_[0] : "undef" },
        });
        return { failed => (@failed && !defined $r) ? JSON::PP::true : JSON::PP::false,
                 detail => "on_fail(" . join(",", @failed) . ")" };
    },
    exception => sub {
        # exceptions => 1 sends OPTION_REQ exceptions; on_exception gets the text.
        my (@exceptions, @failed);
        my $r = client(exceptions => 1)->do_task($fn->{exc} => "x", {
            timeout => $timeout,
            on_exception => sub { push @exceptions, $_[0] },
            on_fail => sub { push @failed, defined $_[0] ? $_[0] : "undef" },
        });
        return { exception => $exceptions[0] } if @exceptions;
        return { failed => @failed ? JSON::PP::true : JSON::PP::false,
                 detail => "on_fail(" . join(",", @failed) . ")" };
    },
    large => sub {
        my $payload = large_payload($cfg->{largeSize});
        my $r = client()->do_task($fn->{echo} => \$payload, { timeout => $timeout });
        return { error => "do_task returned undef" } unless defined $r;
        return { length => length($$r), sha256 => sha256_hex($$r) };
    },
);

for my $name (qw(submit background status fail exception large)) {
    my $obs = eval {
        local $SIG{ALRM} = sub { die "timed out after $cfg->{timeoutMs} ms\n" };
        alarm($timeout + 1);
        my $o = $checks{$name}->();
        alarm 0;
        $o;
    };
    alarm 0;
    if (!$obs) {
        my $err = $@ || "no result";
        $err =~ s/\s+$//;
        $obs = { error => $err };
    }
    print JSON::PP->new->canonical->encode({ check => $name, %$obs }), "\n";
}
exit 0;
