"""The decode engine every token-level method shares (engine.py), its policies (policies.py) and the Method base
that wires them (method.py); see docs/decoding.md."""
