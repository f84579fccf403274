"""Benchmarks of the newsletter mailer: `make bench` (see bench/run.py and docs/benchmarks.md)."""
