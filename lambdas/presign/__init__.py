"""Upload API: pre-signed POST for photo uploads."""
