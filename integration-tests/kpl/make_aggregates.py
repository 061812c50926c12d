"""Makes KPL aggregated records with aws-kinesis-agg (a third-party encoder of the KPL format).

usage: python3 make_aggregates.py USER_RECORDS PER_AGGREGATE
Prints one JSON object per aggregate: partition_key, explicit_hash_key, data_b64 (the aggregate's
bytes), and user_records (each with partition_key and data), in order.
"""
import base64
import json
import sys

from aws_kinesis_agg.aggregator import RecordAggregator

total, per = int(sys.argv[1]), int(sys.argv[2])
agg = RecordAggregator()
users = []


def emit(record):
    pk, ehk, data = record.get_contents()
    print(json.dumps({
        "partition_key": pk,
        "explicit_hash_key": ehk,
        "data_b64": base64.b64encode(data).decode(),
        "user_records": users[:],
    }))
    users.clear()


for i in range(total):
    pk = "user-%d" % (i % 23)
    data = json.dumps({"id": i, "key": pk, "n": i // 23})
    users.append({"partition_key": pk, "data": data})
    full = agg.add_user_record(pk, data.encode())
    if full is not None:  # never with small records; kept for completeness
        raise SystemExit("aggregate filled up unexpectedly")
    if len(users) == per:
        emit(agg.clear_and_get())
if users:
    emit(agg.clear_and_get())
