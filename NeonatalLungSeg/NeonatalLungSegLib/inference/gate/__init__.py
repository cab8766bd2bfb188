"""The domain gate of an improved model: which of its two networks segments a scan (routing.py)."""
