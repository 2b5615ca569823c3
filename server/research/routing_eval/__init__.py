"""Evaluations on real data (read from the shared data folder at run time, never copied)."""
