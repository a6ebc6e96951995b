"""The benchmark behind `make bench`: workloads, the convert baseline, quality, the report."""
