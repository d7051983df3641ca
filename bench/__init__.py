"""The gateway benchmark: `make bench` (bench/run.py) measures the gateway against its simulator."""
