"""Benchmarks for Pocket: an S3 load generator (`bench.load`) and a raw codec speed check (`bench.zfec_speed`)."""
