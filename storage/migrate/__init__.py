"""Moving buckets out of S3: plan, dual-write, backfill, verify, cut over, roll back, detach.

state.py is the per-bucket state machine; source.py reaches the source; the index tables
for ranges, dirty keys and the journal are in index/migrations.py.
"""
