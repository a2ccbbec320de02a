"""chainproof benchmarks: what zero trust costs, side by side with the alternatives.

Run ``python -m benchmarks`` (full sizes, minutes to an hour) or
``python -m benchmarks --quick`` (tiny sizes, seconds; the test suite runs this).
See ``benchmarks/README.md``.
"""
