"""`make bench`: the benchmark scripts (run as ``python bench/bench.py``)."""
