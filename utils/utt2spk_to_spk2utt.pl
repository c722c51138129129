#!/usr/bin/env perl
# Kaldi's utt2spk -> spk2utt: reads "utt spk" lines (stdin or a file), writes "spk utt1 utt2 ..."
# with speakers in order of first appearance (sort utt2spk first for a sorted spk2utt).
use strict; use warnings;
my (%utts, @order);
while (my $line = <>) {
  my @f = split(' ', $line);
  next unless @f;
  @f == 2 or die "utt2spk_to_spk2utt.pl: $ARGV line $.: expected 'utt spk', got: $line";
  my ($utt, $spk) = @f;
  push @order, $spk unless exists $utts{$spk};
  push @{$utts{$spk}}, $utt;
}
print "$_ @{$utts{$_}}\n" for @order;
