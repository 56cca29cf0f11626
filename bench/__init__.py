"""Benchmarks (`python -m bench.pos`); see the README's Benchmarks section."""
