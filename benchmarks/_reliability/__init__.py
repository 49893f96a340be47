"""The sections of `python -m benchmarks reliability`, one module each, and what they share."""
