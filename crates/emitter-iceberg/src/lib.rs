//! Iceberg emitter of kinesis-connectors (`type = "iceberg"`): streams JSON items into an Apache
//! Iceberg table, each batch one append commit, each record committed once.
//!
//! * [`IcebergOptions`]: the options in `connectors.toml` (catalog, namespace, table, warehouse, an
//!   optional table creation from `columns` and `partition_by`).
//! * [`IcebergEmitter`]: writes each batch's rows as Parquet data files (one per partition), appends
//!   them in one commit whose snapshot summary carries the batch's last position per shard, and skips
//!   items a redelivered batch holds that a commit already took.
//! * JSON → column mapping: see the `convert` module; an item that does not fit the schema is refused
//!   with the column and the reason, and goes to the dead-letter target.
#![warn(missing_docs, unreachable_pub)]

mod columns;
mod config;
mod convert;
mod emitter;
mod positions;
mod stage;

pub use columns::{ColumnType, PartitionField};
pub use config::{CatalogKind, ColumnOptions, IcebergOptions, IcebergSettings};
pub use emitter::IcebergEmitter;
