"""fr_bench: benchmark and ablation suite for token-level LLM collaboration (FusionRoute)."""

__version__ = "0.1.0"
