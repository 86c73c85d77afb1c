"""Models: the frozen expert pool and the router (causal LM + linear routing head)."""
