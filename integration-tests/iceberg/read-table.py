"""Reads an Iceberg table back with PyIceberg (a third-party reader) and prints what it holds as JSON.

usage: read-table.py CATALOG_URI WAREHOUSE S3_ENDPOINT NAMESPACE.TABLE [CATALOG_NAME]

Prints {"schema": {column: type}, "partition_spec": [...], "snapshots": n,
"files": [{"partition": {...}, "records": n}], "rows": [...]} with rows as JSON objects
(timestamps in ISO form, decimals as strings), sorted by their "id" column when there is one.
"""
import datetime
import decimal
import json
import os
import sys

from pyiceberg.catalog.sql import SqlCatalog


def plain(value):
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def main():
    uri, warehouse, endpoint, name = sys.argv[1:5]
    catalog_name = sys.argv[5] if len(sys.argv) > 5 else "kinesis-connectors"
    # SQLAlchemy's URL for psycopg2.
    uri = uri.replace("postgres://", "postgresql+psycopg2://", 1)
    catalog = SqlCatalog(
        catalog_name,
        uri=uri,
        warehouse=warehouse,
        **{
            "s3.endpoint": endpoint,
            "s3.access-key-id": os.environ["AWS_ACCESS_KEY_ID"],
            "s3.secret-access-key": os.environ["AWS_SECRET_ACCESS_KEY"],
            "s3.region": "us-east-1",
            "s3.force-virtual-addressing": "false",
        },
    )
    table = catalog.load_table(name)
    arrow = table.scan().to_arrow()
    rows = [plain(r) for r in arrow.to_pylist()]
    if rows and "id" in rows[0]:
        rows.sort(key=lambda r: (r["id"] is None, r["id"]))
    files = []
    for task in table.scan().plan_files():
        partition = task.file.partition
        files.append(
            {
                "partition": [plain(partition[i]) for i in range(len(partition))],
                "records": task.file.record_count,
            }
        )
    out = {
        "schema": {f.name: str(f.field_type) for f in table.schema().fields},
        "partition_spec": [str(f.transform) + ":" + f.name for f in table.spec().fields],
        "snapshots": len(table.metadata.snapshots),
        "files": files,
        "rows": rows,
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
