#!/usr/bin/env perl
# Kaldi's spk2utt -> utt2spk: reads "spk utt1 utt2 ..." lines, writes "utt spk" lines.
use strict; use warnings;
while (my $line = <>) {
  my @f = split(' ', $line);
  next unless @f;
  @f >= 2 or die "spk2utt_to_utt2spk.pl: $ARGV line $.: speaker '$f[0]' has no utterances\n";
  my $spk = shift @f;
  print "$_ $spk\n" for @f;
}
