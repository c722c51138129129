#!/usr/bin/env perl
# Checks that Kaldi table files are what every hdmole tool reads: UTF-8 (Kaldi's validate_text.pl
# rejects anything else, e.g. GBK), no UTF-8 byte-order mark, no carriage returns (Windows CRLF line
# ends). A BOM or a CR is invisible in a terminal but becomes part of the first id or of the last
# field, so the shell tools and Python would disagree about what the file says.
#
#   utils/validate_text_encoding.pl [--utf8-only] <file>...
#
# Prints the first problem as "<file> line N: <problem>. Fix: <fix>" on stdout and exits 1; exits 0
# when every file is clean. --utf8-only checks the encoding alone (utils/fix_data_dir.sh removes a
# BOM and CRs itself, but cannot guess what a non-UTF-8 file was meant to say).
use strict;
use warnings;
use Encode qw(decode FB_CROAK);

my $utf8_only = 0;
if (@ARGV && $ARGV[0] eq '--utf8-only') { $utf8_only = 1; shift @ARGV; }
@ARGV or die "Usage: $0 [--utf8-only] <file>...\n";

sub bad { my ($file, $line, $problem, $fix) = @_; print "$file line $line: $problem. Fix: $fix\n"; exit 1; }

for my $file (@ARGV) {
  open(my $fh, '<:raw', $file) or do { print "$file: cannot be read ($!). Fix: check the path and its permissions\n"; exit 1; };
  my $n = 0;
  while (my $line = <$fh>) {
    $n++;
    my $copy = $line;  # decode() with a check may consume its argument
    eval { decode('UTF-8', $copy, FB_CROAK); 1 } or bad($file, $n, 'not valid UTF-8 (is it GBK or another legacy encoding?)',
      "re-encode it, e.g. iconv -f GBK -t UTF-8 $file > $file.utf8 && mv $file.utf8 $file");
    next if $utf8_only;
    bad($file, $n, 'starts with a UTF-8 byte-order mark (invisible, it becomes part of the first id)',
      "utils/fix_data_dir.sh removes it, or: sed -i '1s/^\\xEF\\xBB\\xBF//' $file") if $n == 1 && $line =~ /^\xEF\xBB\xBF/;
    bad($file, $n, 'contains a carriage return (Windows CRLF line ends; invisible, it becomes part of the last field)',
      "utils/fix_data_dir.sh removes them, or: sed -i 's/\\r\$//' $file") if $line =~ /\r/;
  }
  close($fh);
}
exit 0;
