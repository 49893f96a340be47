"""Benchmarks for aihub_nb: `python -m benchmarks NAME`, one module benchmarks/NAME.py each."""
