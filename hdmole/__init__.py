"""HDMoLE: a mixture of LoRA experts with hierarchical routing and dynamic thresholds."""

__version__ = "0.1.0"
