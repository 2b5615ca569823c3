"""Trace-driven prefix-cache simulator: trace readers, the replay loop, Belady's MIN, reports."""
