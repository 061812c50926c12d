"""Contender (d) of integration-tests/bench/peers: the PyPI package async-kinesis (module `kinesis`),
its Consumer with the in-memory checkpointer, every record's data written as a line to a file.

usage: python3 async_kinesis.py STREAM OUT_FILE EXPECTED_RECORDS
env:   KINESIS_ENDPOINT, AWS_REGION, PYTHONPATH (where async-kinesis is installed),
       KC_BENCH_IDLE_EXIT (seconds without a record after which it gives up; default 60).

Exits 0 once EXPECTED_RECORDS lines are written and flushed; 3 if it went idle before that.
"""

import asyncio
import os
import sys

from kinesis import Consumer, MemoryCheckPointer
from kinesis.processors import Processor


class RawLines(Processor):
    """Hands each record's data on as it is (the default JsonProcessor would parse it)."""

    def add_item(self, item):
        raise NotImplementedError

    def has_items(self):
        return False

    def get_items(self):
        return iter(())

    def parse(self, data):
        yield data


async def main(stream, out_file, expected):
    idle_exit = float(os.environ.get("KC_BENCH_IDLE_EXIT", "60"))
    written = 0
    with open(out_file, "wb") as out:
        async with Consumer(
            stream,
            endpoint_url=os.environ["KINESIS_ENDPOINT"],
            region_name=os.environ.get("AWS_REGION", "us-east-1"),
            iterator_type="TRIM_HORIZON",
            checkpointer=MemoryCheckPointer(),
            processor=RawLines(),
            # The same pacing as the other contenders: 10,000 records per call, 5 calls per second
            # per shard (its default is 1), 1 s after an empty page (its default is 2 s).
            record_limit=10000,
            shard_fetch_rate=5,
            sleep_time_no_records=1,
            # Iteration ends after this long with an empty queue (its default, 2 s, can end it
            # before the first page arrives).
            idle_timeout=idle_exit,
        ) as consumer:
            async for item in consumer:
                out.write(item)
                out.write(b"\n")
                written += 1
                if written >= expected:
                    break
    if written < expected:
        print(f"idle for {idle_exit} s after {written} of {expected} records", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    stream, out_file, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sys.exit(asyncio.run(main(stream, out_file, expected)))
