"""The session's S3 server (``seaweed.py``): buckets, objects and Parquet over ``s3fs``, as the store uses them."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from maml_evidence_tests.team.seaweed import Server


def test_a_new_bucket_holds_what_is_written(seaweed: Server) -> None:
    bucket, other = seaweed.new_bucket(), seaweed.new_bucket()
    assert bucket != other
    fs = seaweed.filesystem()
    assert fs.ls(bucket) == []
    fs.pipe(f"{bucket}/evidence/one.txt", b"written")
    assert fs.cat(f"{bucket}/evidence/one.txt") == b"written"
    assert fs.ls(f"{bucket}/evidence") == [f"{bucket}/evidence/one.txt"]
    assert fs.ls(other) == []
    assert set(seaweed.env()) == {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}
    assert seaweed.env()["AWS_ENDPOINT_URL"] == seaweed.endpoint


def test_parquet_round_trips_over_s3fs(seaweed: Server) -> None:
    bucket, fs = seaweed.new_bucket(), seaweed.filesystem()
    table = pa.table({"spike_run_id": ["a", "b"], "accuracy": [0.91, 0.87]})
    pq.write_table(table, f"{bucket}/tables/metrics/part-0.parquet", filesystem=fs)
    assert pq.read_table(f"{bucket}/tables/metrics/part-0.parquet", filesystem=fs).equals(table)
    assert pq.read_table(f"{bucket}/tables/metrics", filesystem=fs).to_pydict() == table.to_pydict()
