//! The Iceberg emitter: each batch is one append commit of its data files (one per partition),
//! carrying the batch's per-shard positions in the snapshot summary.
//!
//! Before a batch is written the table is loaded afresh and the positions committed by any worker of
//! the pipeline are read from its snapshots ([`crate::positions`]); items at or before a shard's
//! committed position are acknowledged without being written again. So a batch redelivered after a
//! crash between the commit and the checkpoint — or after a lease moved in that window — is not
//! appended twice. Data files written by an attempt whose commit never happened are never referenced;
//! the table's orphan-file clean-up removes them.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_storage_opendal::{AwsCredential, CustomAwsCredentialLoader, OpenDalStorageFactory};
use kinesis_connectors_core::{
    Batch, EmitError, EmitOutcome, Emitter, Item, ItemFailure, ItemPosition,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tokio::sync::Mutex;

use crate::columns;
use crate::config::{CatalogKind, IcebergSettings, redact_uri};
use crate::convert::{Converter, Row};
use crate::positions::{self, Committed};

/// Writes batches into one Iceberg table.
pub struct IcebergEmitter {
    pipeline: Arc<str>,
    catalog: Arc<dyn Catalog>,
    ident: TableIdent,
    state: Mutex<State>,
}

impl std::fmt::Debug for IcebergEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcebergEmitter")
            .field("pipeline", &self.pipeline)
            .field("table", &self.ident)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    committed: Committed,
    converter: Option<(i32, Arc<Converter>)>,
}

fn iceberg_error(what: &str, e: iceberg::Error) -> EmitError {
    if e.retryable() || is_transient(&e) {
        EmitError::retryable(format!("{what}: {e}"))
    } else {
        EmitError::permanent(format!("{what}: {e}"))
    }
}

/// Storage and catalog failures that iceberg does not mark retryable but that pass (connection
/// refused, timeouts, 5xx, throttling).
fn is_transient(e: &iceberg::Error) -> bool {
    !matches!(
        e.kind(),
        iceberg::ErrorKind::DataInvalid
            | iceberg::ErrorKind::FeatureUnsupported
            | iceberg::ErrorKind::TableNotFound
            | iceberg::ErrorKind::NamespaceNotFound
    )
}

/// The pipeline's AWS credentials (the standard chain), handed to the warehouse's S3 client.
#[derive(Debug)]
struct SdkCredentials(SharedCredentialsProvider);

impl iceberg_storage_opendal::ProvideCredential for SdkCredentials {
    type Credential = AwsCredential;

    async fn provide_credential(
        &self,
        _ctx: &reqsign_core::Context,
    ) -> reqsign_core::Result<Option<AwsCredential>> {
        let c = self.0.provide_credentials().await.map_err(|e| {
            reqsign_core::Error::credential_invalid(format!("no AWS credentials: {e}"))
        })?;
        let expires_in = c.expiry().and_then(|t| {
            let millis = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
            reqsign_core::time::Timestamp::from_millisecond(i64::try_from(millis).ok()?).ok()
        });
        Ok(Some(AwsCredential {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: c.secret_access_key().to_owned(),
            session_token: c.session_token().map(str::to_owned),
            expires_in,
        }))
    }
}

impl IcebergEmitter {
    /// Connects to the catalog and, with `create_table`, creates the namespace and the table.
    pub async fn connect(
        pipeline: &str,
        settings: IcebergSettings,
        default_region: &str,
    ) -> Result<Self, EmitError> {
        let o = &settings.options;
        let region = o
            .region
            .clone()
            .unwrap_or_else(|| default_region.to_owned());
        let sdk = kinesis_connectors_aws::sdk_config(&region, None).await;
        let credentials = sdk
            .credentials_provider()
            .ok_or_else(|| EmitError::permanent("no AWS credentials provider"))?;
        let storage = Arc::new(OpenDalStorageFactory::S3 {
            customized_credential_load: Some(CustomAwsCredentialLoader::new(SdkCredentials(
                credentials,
            ))),
        });
        let mut props = HashMap::from([
            ("s3.region".to_owned(), region.clone()),
            ("s3.disable-config-load".to_owned(), "true".to_owned()),
            ("s3.disable-ec2-metadata".to_owned(), "true".to_owned()),
        ]);
        if let Some(endpoint) = o.endpoint.as_ref().filter(|e| !e.is_empty()) {
            props.insert("s3.endpoint".to_owned(), endpoint.clone());
            props.insert("s3.path-style-access".to_owned(), "true".to_owned());
        }
        let catalog: Arc<dyn Catalog> = match o.catalog {
            CatalogKind::Sql => {
                props.insert("uri".to_owned(), o.catalog_uri.clone());
                props.insert("sql_bind_style".to_owned(), "DollarNumeric".to_owned());
                if let Some(w) = &o.warehouse {
                    props.insert("warehouse".to_owned(), w.clone());
                }
                let mut last = None;
                // Workers starting together race on the catalog's CREATE TABLE IF NOT EXISTS
                // (PostgreSQL's pg_type key): a lost race is retried.
                for _ in 0..3 {
                    match iceberg_catalog_sql::SqlCatalogBuilder::default()
                        .with_storage_factory(storage.clone())
                        .load(o.catalog_name.clone(), props.clone())
                        .await
                    {
                        Ok(c) => {
                            return Self::with_catalog(pipeline, &settings, Arc::new(c)).await;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let e = last.map(|e| e.to_string()).unwrap_or_default();
                return Err(EmitError::retryable(format!(
                    "SQL catalog at {}: {e}",
                    redact_uri(&o.catalog_uri)
                )));
            }
            CatalogKind::Rest => {
                props.insert("uri".to_owned(), o.catalog_uri.clone());
                if let Some(w) = &o.warehouse {
                    props.insert("warehouse".to_owned(), w.clone());
                }
                let c = iceberg_catalog_rest::RestCatalogBuilder::default()
                    .with_storage_factory(storage)
                    .load(o.catalog_name.clone(), props)
                    .await
                    .map_err(|e| iceberg_error("REST catalog", e))?;
                Arc::new(c)
            }
        };
        Self::with_catalog(pipeline, &settings, catalog).await
    }

    async fn with_catalog(
        pipeline: &str,
        settings: &IcebergSettings,
        catalog: Arc<dyn Catalog>,
    ) -> Result<Self, EmitError> {
        let namespace = NamespaceIdent::from_vec(settings.namespace.clone())
            .map_err(|e| EmitError::permanent(format!("namespace: {e}")))?;
        let ident = TableIdent::new(namespace.clone(), settings.options.table.clone());
        if settings.options.create_table {
            create(catalog.as_ref(), &namespace, &ident, settings).await?;
        }
        Ok(Self {
            pipeline: pipeline.into(),
            catalog,
            ident,
            state: Mutex::new(State::default()),
        })
    }

    /// The table's identifier.
    pub fn table(&self) -> &TableIdent {
        &self.ident
    }

    async fn write(&self, batch: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        let mut state = self.state.lock().await;
        let table = self
            .catalog
            .load_table(&self.ident)
            .await
            .map_err(|e| iceberg_error(&format!("loading table {}", self.ident), e))?;
        state.committed.refresh(&self.pipeline, table.metadata());
        let schema = table.metadata().current_schema();
        let converter = match &state.converter {
            Some((id, c)) if *id == schema.schema_id() => c.clone(),
            _ => {
                let c = Arc::new(
                    Converter::new(schema.clone())
                        .map_err(|m| EmitError::permanent(format!("table {}: {m}", self.ident)))?,
                );
                state.converter = Some((schema.schema_id(), c.clone()));
                c
            }
        };

        let mut failures = Vec::new();
        let mut rows: Vec<Row> = Vec::with_capacity(batch.items.len());
        let mut last: HashMap<&str, ItemPosition> = HashMap::new();
        for (index, envelope) in batch.items.iter().enumerate() {
            // A refused item is refused again on every delivery (conversion is deterministic), so
            // it reaches the dead-letter target even when its batch was committed before a crash.
            let row = match converter.row(envelope.item.data()) {
                Ok(row) => row,
                Err(reason) => {
                    failures.push(ItemFailure::permanent(index, reason));
                    continue;
                }
            };
            let shard = envelope.record().shard_id.as_ref();
            let position = envelope.item_position();
            if state
                .committed
                .get(shard)
                .is_some_and(|done| position <= *done)
            {
                continue;
            }
            last.insert(shard, position);
            rows.push(row);
        }
        if rows.is_empty() {
            return Ok(EmitOutcome::with_failures(failures));
        }

        let data_files = self.write_files(&table, &converter, &rows, batch).await?;
        let mut properties: HashMap<String, String> = last
            .iter()
            .map(|(shard, p)| (positions::key(&self.pipeline, shard), positions::encode(p)))
            .collect();
        properties.insert("kc.pipeline".to_owned(), self.pipeline.to_string());
        let tx = Transaction::new(&table);
        let tx = tx
            .fast_append()
            .add_data_files(data_files)
            .set_snapshot_properties(properties)
            .apply(tx)
            .map_err(|e| iceberg_error("preparing the append", e))?;
        tx.commit(self.catalog.as_ref())
            .await
            .map_err(|e| iceberg_error(&format!("committing to {}", self.ident), e))?;
        for (shard, p) in last {
            state.committed.note(shard, p);
        }
        // The next refresh walks from the new head back to the last snapshot read, so a commit another
        // worker made between that read and this commit is read too (its shards may move here later).
        Ok(EmitOutcome::with_failures(failures))
    }

    async fn write_files(
        &self,
        table: &iceberg::table::Table,
        converter: &Converter,
        rows: &[Row],
        batch: &Batch<Item>,
    ) -> Result<Vec<DataFile>, EmitError> {
        let record_batch = converter
            .batch(rows)
            .map_err(|e| EmitError::permanent(format!("building the Arrow batch: {e}")))?;
        let metadata = table.metadata();
        let location = DefaultLocationGenerator::new(metadata)
            .map_err(|e| iceberg_error("table location", e))?;
        let first = batch
            .context
            .shards
            .first()
            .map(|r| format!("{}-{}", r.shard, r.first.position.sequence))
            .unwrap_or_default();
        let names = DefaultFileNameGenerator::new(
            format!("kc-{}-{first}-{}", self.pipeline, uuid_like()),
            None,
            DataFileFormat::Parquet,
        );
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let parquet = ParquetWriterBuilder::new(properties, converter.schema().clone());
        let rolling = RollingFileWriterBuilder::new_with_default_file_size(
            parquet,
            table.file_io().clone(),
            location,
            names,
        );
        let builder = DataFileWriterBuilder::new(rolling);
        let spec = metadata.default_partition_spec();
        // One data file (or more, past the rolling size) per partition of the batch.
        let parts = if spec.is_unpartitioned() {
            vec![(None, record_batch)]
        } else {
            let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(
                converter.schema().clone(),
                spec.clone(),
            )
            .map_err(|e| iceberg_error("partition spec", e))?;
            splitter
                .split(&record_batch)
                .map_err(|e| iceberg_error("partitioning the batch", e))?
                .into_iter()
                .map(|(key, part)| (Some(key), part))
                .collect()
        };
        let mut files = Vec::new();
        for (key, part) in parts {
            let mut writer = builder
                .build(key)
                .await
                .map_err(|e| iceberg_error("opening a data file", e))?;
            writer
                .write(part)
                .await
                .map_err(|e| iceberg_error("writing a data file", e))?;
            files.extend(
                writer
                    .close()
                    .await
                    .map_err(|e| iceberg_error("closing a data file", e))?,
            );
        }
        Ok(files)
    }
}

/// A name part unique to this attempt (files of attempts that never committed are orphans).
fn uuid_like() -> String {
    format!("{:032x}", rand::random::<u128>())
}

async fn create(
    catalog: &dyn Catalog,
    namespace: &NamespaceIdent,
    ident: &TableIdent,
    settings: &IcebergSettings,
) -> Result<(), EmitError> {
    let exists = catalog
        .namespace_exists(namespace)
        .await
        .map_err(|e| iceberg_error("namespace", e))?;
    if !exists
        && let Err(e) = catalog.create_namespace(namespace, HashMap::new()).await
        && !catalog.namespace_exists(namespace).await.unwrap_or(false)
    {
        return Err(iceberg_error("creating the namespace", e));
    }
    if catalog
        .table_exists(ident)
        .await
        .map_err(|e| iceberg_error("table", e))?
    {
        return Ok(());
    }
    let schema = columns::schema(&settings.columns)
        .map_err(|e| EmitError::permanent(format!("columns: {e}")))?;
    let spec = columns::partition_spec(&schema, &settings.partition_by)
        .map_err(|e| EmitError::permanent(format!("partition_by: {e}")))?;
    let creation = TableCreation::builder()
        .name(ident.name().to_owned())
        .schema(schema)
        .partition_spec(spec)
        .build();
    match catalog.create_table(namespace, creation).await {
        Ok(_) => Ok(()),
        // Another worker created it first.
        Err(_) if catalog.table_exists(ident).await.unwrap_or(false) => Ok(()),
        Err(e) => Err(iceberg_error("creating the table", e)),
    }
}

#[async_trait]
impl Emitter<Item> for IcebergEmitter {
    async fn emit(&self, batch: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        self.write(batch).await
    }

    async fn check(&self) -> Result<(), EmitError> {
        let table = self
            .catalog
            .load_table(&self.ident)
            .await
            .map_err(|e| iceberg_error(&format!("table {}", self.ident), e))?;
        Converter::new(table.metadata().current_schema().clone())
            .map(|_| ())
            .map_err(|m| EmitError::permanent(format!("table {}: {m}", self.ident)))
    }
}
