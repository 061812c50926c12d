//! The Redshift Data API calls the emitter makes, one small function each, and the wait for a statement.
//!
//! * `BatchExecuteStatement` ([`DataApi::run`]): at most 40 statements, run in order as one
//!   transaction in a session of their own; returns at once with the statement's id.
//! * `DescribeStatement` ([`DataApi::wait`]): polled until the statement is `FINISHED`, `FAILED` or
//!   `ABORTED`. The waits grow like the pipeline's retry ceilings (`poll_interval` doubling up to
//!   `max_poll_interval`); this is the Data API's asynchronous protocol, not a retry. A throttled or
//!   failed `DescribeStatement` is polled again (the statement runs on regardless) until
//!   `statement_timeout`, after which the statement is cancelled (`CancelStatement`) and the load
//!   reported as retryable: the loaded-files table makes the retry safe even if the cancel came too late.
//! * The Data API's per-call limits: 100 KB of SQL per statement; a statement may run up to 24 hours;
//!   500 statements may be active per account and Region (`ActiveStatementsExceededException`, treated as
//!   throttling).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_redshiftdata::Client;
use aws_sdk_redshiftdata::types::{StatementStatusString, StatusString};
use kinesis_connectors_core::{EmitError, RetryPolicy};

use crate::config::{RedshiftConfig, Target};
use crate::metrics::RedshiftMetrics;
use crate::retry::{api_error, is_transient_sql_error};

/// A statement that did not finish.
#[derive(Clone, Debug)]
pub(crate) enum StatementError {
    /// The Data API call failed, the statement was aborted or timed out (retryable or permanent).
    Api(EmitError),
    /// Redshift ran the SQL and it failed: its error text, and the failing statement of a batch
    /// (0-based) when the Data API says which.
    Sql {
        /// Index of the failing statement in the batch.
        index: Option<usize>,
        /// Redshift's error text.
        message: String,
    },
}

impl StatementError {
    /// Whether trying the same statements again may pass.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            StatementError::Api(e) => e.is_retryable(),
            StatementError::Sql { message, .. } => is_transient_sql_error(message),
        }
    }
}

/// Rows per statement of a finished batch (the Data API's `ResultRows`: rows affected or returned).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Finished {
    /// One entry per statement, in order.
    pub(crate) rows: Vec<i64>,
}

/// A Data API client bound to one cluster or workgroup and database.
pub(crate) struct DataApi {
    client: Client,
    target: Target,
    database: String,
    statement_name: String,
    poll: RetryPolicy,
    timeout: Duration,
    metrics: Arc<RedshiftMetrics>,
}

impl DataApi {
    pub(crate) fn new(
        client: Client,
        config: &RedshiftConfig,
        pipeline: &str,
        metrics: Arc<RedshiftMetrics>,
    ) -> Self {
        Self {
            client,
            target: config.target.clone(),
            database: config.database.clone(),
            // Shown in SYS_QUERY_HISTORY / STL_QUERY: who loaded this.
            statement_name: format!("kinesis-connector {pipeline}")
                .chars()
                .take(500)
                .collect(),
            poll: RetryPolicy {
                base_delay: config.poll_interval,
                max_delay: config.max_poll_interval,
                max_attempts: None,
            },
            timeout: config.statement_timeout,
            metrics,
        }
    }

    /// Runs `sqls` as one transaction (`BatchExecuteStatement`) and waits for the outcome.
    pub(crate) async fn run(&self, sqls: Vec<String>) -> Result<Finished, StatementError> {
        let count = sqls.len();
        let req = self
            .client
            .batch_execute_statement()
            .set_sqls(Some(sqls))
            .database(&self.database)
            .statement_name(&self.statement_name);
        let req = match &self.target {
            Target::Cluster {
                cluster_identifier,
                db_user,
                secret_arn,
            } => req
                .cluster_identifier(cluster_identifier)
                .set_db_user(db_user.clone())
                .set_secret_arn(secret_arn.clone()),
            Target::Serverless {
                workgroup_name,
                secret_arn,
            } => req
                .workgroup_name(workgroup_name)
                .set_secret_arn(secret_arn.clone()),
        };
        RedshiftMetrics::add(&self.metrics.statements, 1);
        let out = req
            .send()
            .await
            .map_err(|e| StatementError::Api(api_error("BatchExecuteStatement", e).0))?;
        let id = out.id.ok_or_else(|| {
            StatementError::Api(EmitError::retryable(
                "BatchExecuteStatement answered without a statement id",
            ))
        })?;
        self.wait(&id, count).await
    }

    /// Polls `DescribeStatement` until statement `id` (a batch of `count`) ends; see the module docs.
    pub(crate) async fn wait(&self, id: &str, count: usize) -> Result<Finished, StatementError> {
        let started = Instant::now();
        let mut round: u32 = 0;
        loop {
            RedshiftMetrics::add(&self.metrics.polls, 1);
            match self.client.describe_statement().id(id).send().await {
                Ok(out) => match out.status {
                    Some(StatusString::Finished) => {
                        let mut subs = out.sub_statements.unwrap_or_default();
                        if subs.is_empty() {
                            return Ok(Finished {
                                rows: vec![out.result_rows; count.max(1)],
                            });
                        }
                        subs.sort_by_key(|s| sub_index(&s.id));
                        return Ok(Finished {
                            rows: subs.iter().map(|s| s.result_rows).collect(),
                        });
                    }
                    Some(StatusString::Failed) => {
                        let subs = out.sub_statements.unwrap_or_default();
                        let failed = subs
                            .iter()
                            .find(|s| s.status == Some(StatementStatusString::Failed));
                        let message = failed
                            .and_then(|s| s.error.clone())
                            .or(out.error)
                            .unwrap_or_else(|| "the statement failed without an error text".into());
                        return Err(StatementError::Sql {
                            index: failed.and_then(|s| sub_index(&s.id)),
                            message,
                        });
                    }
                    Some(StatusString::Aborted) => {
                        return Err(StatementError::Api(EmitError::retryable(format!(
                            "Redshift statement {id} was aborted (cancelled by someone)"
                        ))));
                    }
                    _ => {}
                },
                Err(e) => {
                    let (err, _) = api_error("DescribeStatement", e);
                    if !err.is_retryable() {
                        return Err(StatementError::Api(err));
                    }
                    tracing::debug!(statement = %id, error = %err, "DescribeStatement failed; polling again");
                }
            }
            let elapsed = started.elapsed();
            if elapsed >= self.timeout {
                self.cancel(id).await;
                return Err(StatementError::Api(EmitError::retryable(format!(
                    "Redshift statement {id} did not finish within {:?} (statement_timeout); cancelled",
                    self.timeout
                ))));
            }
            let wait = self.poll.ceiling(round).min(self.timeout - elapsed);
            round = round.saturating_add(1);
            tokio::time::sleep(wait).await;
        }
    }

    /// `CancelStatement`, best effort (the statement may have ended meanwhile).
    async fn cancel(&self, id: &str) {
        if let Err(e) = self.client.cancel_statement().id(id).send().await {
            let (err, _) = api_error("CancelStatement", e);
            tracing::warn!(statement = %id, error = %err, "cancel of a timed-out statement failed");
        }
    }
}

/// The 0-based position of a sub-statement from its id (`UUID:N`, N from 1).
fn sub_index(id: &str) -> Option<usize> {
    id.rsplit_once(':')
        .and_then(|(_, n)| n.parse::<usize>().ok())
        .and_then(|n| n.checked_sub(1))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn sub_statement_ids_give_positions() {
        assert_eq!(sub_index("d9b6c0c9-0747-4bf4-b142-e8883122f766:2"), Some(1));
        assert_eq!(
            sub_index("d9b6c0c9-0747-4bf4-b142-e8883122f766:10"),
            Some(9)
        );
        assert_eq!(sub_index("d9b6c0c9-0747-4bf4-b142-e8883122f766"), None);
        assert_eq!(sub_index("x:0"), None);
    }
}
