"""The results report: the comparison table and its figures."""
