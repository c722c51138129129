#!/usr/bin/env perl
# Kaldi's spk2utt -> utt2spk: reads "spk utt1 utt2 ..." lines, writes "utt spk" lines.
use strict; use warnings;
sub fail { print STDERR "$_[0]\n"; exit 1; }  # exit 1, as the shell helpers (die would exit 2 or 255)
my $me = "spk2utt_to_utt2spk.pl";
if (grep { $_ eq "--help" || $_ eq "-h" } @ARGV) { print "Usage: spk2utt_to_utt2spk.pl [<spk2utt>] > utt2spk   (no file: reads stdin)\n"; exit 0; }
for my $file (@ARGV) {  # checked first: perl's <> only warns about a missing file and exits 0
  next if $file eq "-";
  fail("$me: unknown option $file (try --help)") if $file =~ /^-/;
  -f $file && -r $file or fail("$me: cannot read spk2utt file '$file' (it does not exist or is not readable)");
}
while (my $line = <>) {
  my @f = split(' ', $line);
  next unless @f;
  @f >= 2 or fail("$me: " . ($ARGV eq "-" ? "stdin" : $ARGV) . " line $.: speaker '$f[0]' has no utterances");
  my $spk = shift @f;
  print "$_ $spk\n" for @f;
}
