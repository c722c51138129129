#!/usr/bin/env perl
# Kaldi's utt2spk -> spk2utt: reads "utt spk" lines (stdin or a file), writes "spk utt1 utt2 ..."
# with speakers in order of first appearance (sort utt2spk first for a sorted spk2utt).
use strict; use warnings;
sub fail { print STDERR "$_[0]\n"; exit 1; }  # exit 1, as the shell helpers (die would exit 2 or 255)
my $me = "utt2spk_to_spk2utt.pl";
if (grep { $_ eq "--help" || $_ eq "-h" } @ARGV) { print "Usage: utt2spk_to_spk2utt.pl [<utt2spk>] > spk2utt   (no file: reads stdin)\n"; exit 0; }
for my $file (@ARGV) {  # checked first: perl's <> only warns about a missing file and exits 0
  next if $file eq "-";
  fail("$me: unknown option $file (try --help)") if $file =~ /^-/;
  -f $file && -r $file or fail("$me: cannot read utt2spk file '$file' (it does not exist or is not readable)");
}
my (%utts, @order);
while (my $line = <>) {
  my @f = split(' ', $line);
  next unless @f;
  chomp $line;
  @f == 2 or fail("$me: " . ($ARGV eq "-" ? "stdin" : $ARGV) . " line $.: expected 'utt spk', got: $line");
  my ($utt, $spk) = @f;
  push @order, $spk unless exists $utts{$spk};
  push @{$utts{$spk}}, $utt;
}
print "$_ @{$utts{$_}}\n" for @order;
