//! The worker: shares a stream's shards with other workers through leases, reads the shards it holds,
//! and starts a child shard only after its parents were read to their end and delivered.
//!
//! Every `take_interval` the worker scans the lease table: leases it holds but another worker now owns
//! are lost (their shard is dropped at once, without checkpointing); expired or unowned leases are taken
//! up to an even share, then leases are stolen from busier workers one at a time ([`plan_takes`]). Held
//! leases are renewed every `renew_interval` by a task of their own, so no scan, shard sync or slow
//! call delays a renewal; a refused renewal means the lease is lost, and a lease that could not be
//! confirmed within the failover time expires here before any other worker may take it
//! ([`HeldLease`]). A lost lease stops its shard at once.
//!
//! A lease the table shows as this worker's own, but that this process does not hold, was held by an
//! earlier run under the same `worker_id` (a container restarted in place): the embedded store's one
//! process takes it back at once; with a shared table it is taken once it is expired (its counter
//! unchanged for the failover time), so a live process that happens to share the id keeps it.
//!
//! Shard discovery (`ListShards`) runs at start, every `shard_sync_interval`, and at once whenever a
//! shard ends. A newly seen shard gets a lease before anyone reads it:
//!
//! * a child of a shard already in the table starts at TRIM_HORIZON (nothing lost across a reshard);
//! * otherwise the configured initial position applies; with `latest`, a shard that is already closed is
//!   skipped (its lease is created ended) and an open one starts at the time the worker started, stored
//!   as AT_TIMESTAMP, so a restart before its first checkpoint skips nothing.
//!
//! A finished parent's lease is deleted once each of its children has checkpointed progress.
//!
//! On shutdown the worker stops fetching, lets every shard deliver and checkpoint, then releases its
//! leases (owner cleared) so other workers take them at once instead of after the failover time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use chrono::{DateTime, Utc};
use kinesis_connectors_core::ShardId;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::error::ConsumerError;
use crate::lease::{
    DEFAULT_FAILOVER_TIME, ExpiryClock, HeldLease, Lease, LeaseSettings, LeaseStore, LeaseTiming,
    LeaseView, plan_takes,
};
use crate::metrics::ConsumerMetrics;
use crate::position::{Checkpoint, InitialPosition};
use crate::processor::{
    Checkpointer, InitializationInput, ShardRecordProcessorFactory, ShutdownReason,
};
use crate::reader::{PageBudget, ReadOutcome, ReaderSettings, ShardContext, ShardReader};
use crate::shard::{ShardInfo, parents_first};

/// Default time between shard discoveries.
pub const DEFAULT_SHARD_SYNC_INTERVAL: Duration = Duration::from_secs(60);

/// How the worker reads a stream.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// The stream.
    pub stream: String,
    /// Where shards without a checkpoint start.
    pub initial_position: InitialPosition,
    /// How each shard is polled.
    pub reader: ReaderSettings,
    /// Time between shard discoveries.
    pub shard_sync_interval: Duration,
    /// Stop each shard at its tip, and the worker once every shard it can read is at its tip or ended
    /// (for batch runs, the demo and tests) instead of following the stream.
    pub until_tip: bool,
    /// Lease timing and this worker's identity.
    pub leases: LeaseSettings,
    /// Polling or enhanced fan-out.
    pub reader_kind: ReaderKind,
}

/// How shards are read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ReaderKind {
    /// `GetRecords` polling (shared 2 MiB/s per shard with every other polling consumer).
    #[default]
    Polling,
    /// Enhanced fan-out: `SubscribeToShard` as the registered stream consumer `consumer_name`
    /// (a dedicated 2 MiB/s per shard, pushed with ~70 ms latency).
    FanOut {
        /// The stream consumer's name (registered if missing).
        consumer_name: String,
    },
}

impl WorkerSettings {
    /// Settings for `stream` with defaults.
    pub fn new(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            initial_position: InitialPosition::TrimHorizon,
            reader: ReaderSettings::default(),
            shard_sync_interval: DEFAULT_SHARD_SYNC_INTERVAL,
            until_tip: false,
            leases: LeaseSettings::new(LeaseSettings::default_worker_id(), DEFAULT_FAILOVER_TIME),
            reader_kind: ReaderKind::Polling,
        }
    }
}

/// Reads the shards of one stream this worker holds leases on; see the module documentation.
pub struct Worker {
    client: Client,
    settings: WorkerSettings,
    store: Arc<dyn LeaseStore>,
    factory: Arc<dyn ShardRecordProcessorFactory>,
    metrics: Arc<ConsumerMetrics>,
}

struct RunningShard {
    cancel: CancellationToken,
    abandon: Arc<AtomicBool>,
}

/// What one scan of the table produced.
struct Scan {
    leases: BTreeMap<String, Lease>,
    expired: HashSet<String>,
}

impl Worker {
    /// A worker reading with `client`, leasing through `store`, processing with `factory`'s processors.
    pub fn new(
        client: Client,
        settings: WorkerSettings,
        store: Arc<dyn LeaseStore>,
        factory: Arc<dyn ShardRecordProcessorFactory>,
    ) -> Self {
        Self {
            client,
            settings,
            store,
            factory,
            metrics: Arc::new(ConsumerMetrics::default()),
        }
    }

    /// The engine's live counters (per-shard progress, leases held).
    pub fn metrics(&self) -> Arc<ConsumerMetrics> {
        self.metrics.clone()
    }

    /// This worker's id in the lease table.
    pub fn worker_id(&self) -> &str {
        &self.settings.leases.worker_id
    }

    /// Runs until `cancel` fires (or, with `until_tip`, until there is nothing left to read); on the way
    /// out every shard's processor is shut down with [`ShutdownReason::Requested`] and the leases are
    /// released.
    pub async fn run(&self, cancel: CancellationToken) -> Result<(), ConsumerError> {
        let started_at = Utc::now();
        let started = Instant::now();
        let me = self.settings.leases.worker_id.clone();
        let stream: Arc<str> = Arc::from(self.settings.stream.as_str());
        let held: Held = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let renewer_stop = CancellationToken::new();
        let renewer = tokio::spawn(renew_loop(
            held.clone(),
            self.settings.leases.renew_interval,
            renewer_stop.clone(),
        ));
        let mut running: HashMap<String, RunningShard> = HashMap::new();
        let mut done: HashSet<String> = HashSet::new();
        let mut tasks: JoinSet<(String, Result<ReadOutcome, ConsumerError>)> = JoinSet::new();
        let mut clock = ExpiryClock::default();
        let mut hash_ranges: HashMap<String, (u128, u128)> = HashMap::new();
        let mut next_sync = Instant::now();
        let mut result = Ok(());
        let requests = Arc::new(Semaphore::new(
            self.settings.reader.max_concurrent_requests.max(1),
        ));
        let budget = Arc::new(PageBudget::new(self.settings.reader.max_fetched_bytes));
        let consumer_arn: Option<Arc<str>> = match &self.settings.reader_kind {
            ReaderKind::Polling => None,
            ReaderKind::FanOut { consumer_name } => {
                let arn = crate::fanout::ensure_consumer(
                    &self.client,
                    &self.settings.stream,
                    consumer_name,
                    &cancel,
                )
                .await?;
                Some(Arc::from(arn))
            }
        };
        tracing::info!(stream = %stream, worker = %me, store = %self.store.describe(), fan_out = consumer_arn.is_some(), "worker started");
        loop {
            let now = Instant::now();
            if now >= next_sync {
                match self.sync_shards(started_at, &cancel).await {
                    Ok(ranges) => hash_ranges = ranges,
                    Err(_) if cancel.is_cancelled() => break,
                    Err(e) if is_retryable(&e) => {
                        tracing::warn!(stream = %stream, error = %e, "shard sync failed; will retry")
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
                next_sync = now + self.settings.shard_sync_interval;
            }
            let scan = match self.scan(&mut clock).await {
                Ok(s) => s,
                Err(e) if is_retryable(&e) => {
                    tracing::warn!(stream = %stream, error = %e, "lease scan failed; will retry");
                    if wait(&cancel, self.settings.leases.take_interval).await {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            // Leases another worker took from us, and leases lost or expired here.
            for (shard, lease) in &scan.leases {
                if let Some(h) = lock(&held).get(shard)
                    && lease.owner.as_deref() != Some(&me)
                    && !lease.checkpoint.is_shard_end()
                {
                    tracing::warn!(shard = %shard, new_owner = ?lease.owner, "lease taken by another worker; dropping the shard");
                    h.mark_lost();
                }
            }
            let lost: Vec<String> = lock(&held)
                .values()
                .filter(|h| h.is_lost())
                .map(|h| h.shard().to_owned())
                .collect();
            for shard in lost {
                if let Some(r) = running.get(&shard) {
                    r.abandon.store(true, Ordering::SeqCst);
                    r.cancel.cancel();
                }
                lock(&held).remove(&shard);
            }
            if !cancel.is_cancelled() {
                self.take_leases(&me, &scan, &clock, &held).await;
            }
            self.metrics.set_leases_held(lock(&held).len());
            // Start reading held shards whose parents are done.
            for (shard, lease) in &scan.leases {
                let Some(h) = lock(&held).get(shard).cloned() else {
                    continue;
                };
                if running.contains_key(shard)
                    || done.contains(shard)
                    || lease.checkpoint.is_shard_end()
                    || lease.unreadable.is_some()
                    || cancel.is_cancelled()
                {
                    continue;
                }
                let parents_done = lease.parents.iter().all(|p| {
                    scan.leases
                        .get(p)
                        .is_none_or(|pl| pl.checkpoint.is_shard_end())
                });
                if !parents_done {
                    continue;
                }
                tracing::info!(stream = %stream, shard = %shard, from = %lease.checkpoint, "starting shard");
                let token = cancel.child_token();
                let abandon = Arc::new(AtomicBool::new(false));
                running.insert(
                    shard.clone(),
                    RunningShard {
                        cancel: token.clone(),
                        abandon: abandon.clone(),
                    },
                );
                let task = ShardTask {
                    client: self.client.clone(),
                    stream: stream.clone(),
                    shard: Arc::from(shard.as_str()),
                    checkpoint: lease.checkpoint.clone(),
                    resume: lease.resume.clone(),
                    hash_range: hash_ranges.get(shard).copied(),
                    settings: self.settings.reader.clone(),
                    until_tip: self.settings.until_tip,
                    consumer_arn: consumer_arn.clone(),
                    lease: h,
                    factory: self.factory.clone(),
                    metrics: self.metrics.clone(),
                    requests: requests.clone(),
                    budget: budget.clone(),
                    cancel: token,
                    abandon,
                };
                let name = shard.clone();
                tasks.spawn(async move { (name, task.run().await) });
            }
            // With a shared table, whether another owner is alive is known only after a failover time.
            let judged = !self.store.is_shared()
                || started.elapsed()
                    > self.settings.leases.failover_time + 2 * self.settings.leases.take_interval;
            if self.settings.until_tip
                && running.is_empty()
                && judged
                && self.nothing_left(&me, &scan, &done)
            {
                tracing::info!(stream = %stream, "every shard is at its tip or ended");
                break;
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    let (shard, outcome) = match joined {
                        Ok(v) => v,
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        Err(e) => (String::new(), Err(ConsumerError::Protocol(e.to_string()))),
                    };
                    running.remove(&shard);
                    match outcome {
                        Ok(ReadOutcome::ShardEnd) => {
                            done.insert(shard.clone());
                            lock(&held).remove(&shard);
                            next_sync = Instant::now();
                        }
                        Ok(ReadOutcome::AtTip) => {
                            done.insert(shard);
                        }
                        Ok(ReadOutcome::Cancelled) => {
                            let mut held = lock(&held);
                            if held.get(&shard).is_some_and(|h| h.is_lost()) {
                                held.remove(&shard);
                                self.metrics.forget(&shard);
                            }
                        }
                        Err(e) => {
                            tracing::error!(shard = %shard, error = %e, "shard failed; stopping the worker");
                            result = Err(e);
                            break;
                        }
                    }
                }
                () = tokio::time::sleep(self.settings.leases.take_interval) => {}
            }
        }
        for r in running.values() {
            r.cancel.cancel();
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((shard, Err(e))) => {
                    tracing::error!(shard = %shard, error = %e, "shard failed while stopping")
                }
                Ok(_) => {}
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {}
            }
        }
        // The leases were renewed while the shards drained; now everything read is delivered and
        // checkpointed: free them (graceful hand-off).
        renewer_stop.cancel();
        let _ = renewer.await;
        if self.store.is_shared() {
            let leases: Vec<Arc<HeldLease>> = lock(&held).values().cloned().collect();
            for h in leases {
                match h.release().await {
                    Ok(true) => tracing::info!(shard = %h.shard(), "lease released"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(shard = %h.shard(), error = %e, "lease release failed; it expires after the failover time")
                    }
                }
            }
        }
        result
    }

    /// Whether this worker has nothing more to read: every lease it could read is done, ended, or held
    /// by another live worker.
    fn nothing_left(&self, me: &str, scan: &Scan, done: &HashSet<String>) -> bool {
        scan.leases.values().all(|l| {
            l.checkpoint.is_shard_end()
                || done.contains(&l.shard_id)
                || (l.owner.as_deref().is_some_and(|o| o != me)
                    && !scan.expired.contains(&l.shard_id))
        })
    }

    async fn scan(&self, clock: &mut ExpiryClock) -> Result<Scan, ConsumerError> {
        // Bounded, so a table that hangs cannot stall the loop that drops lost shards.
        let limit = self.settings.leases.failover_time;
        let list = tokio::time::timeout(limit, self.store.list())
            .await
            .unwrap_or(Err(crate::error::StoreError::Timeout {
                operation: "scan",
                after: limit,
            }))?;
        let expired: HashSet<String> = if self.store.is_shared() {
            clock
                .observe(&list, Instant::now(), self.settings.leases.failover_time)
                .into_iter()
                .collect()
        } else {
            // One process owns the embedded store: whatever a previous run held is ours.
            list.iter().map(|l| l.shard_id.clone()).collect()
        };
        Ok(Scan {
            leases: list.into_iter().map(|l| (l.shard_id.clone(), l)).collect(),
            expired,
        })
    }

    async fn take_leases(&self, me: &str, scan: &Scan, clock: &ExpiryClock, held: &Held) {
        let views: Vec<LeaseView> = {
            let held = lock(held);
            scan.leases
                .values()
                .filter(|l| !l.checkpoint.is_shard_end() && l.unreadable.is_none())
                .map(|l| {
                    lease_view(
                        me,
                        l,
                        held.contains_key(&l.shard_id),
                        scan,
                        self.store.is_shared(),
                    )
                })
                .collect()
        };
        let plan = plan_takes(
            me,
            &views,
            self.settings.leases.max_leases,
            self.settings.leases.max_steals_per_scan,
        );
        let timing = self
            .store
            .is_shared()
            .then(|| LeaseTiming::from_settings(&self.settings.leases));
        for (shard, stolen) in plan
            .take
            .iter()
            .map(|s| (s, false))
            .chain(plan.steal.iter().map(|s| (s, true)))
        {
            let Some(lease) = scan.leases.get(shard) else {
                continue;
            };
            let sent_at = Instant::now();
            let take = self.store.take(shard, lease.counter, me);
            let taken = match timing {
                Some(t) => tokio::time::timeout(t.call_timeout, take)
                    .await
                    .unwrap_or(Err(crate::error::StoreError::Timeout {
                        operation: "take",
                        after: t.call_timeout,
                    })),
                None => take.await,
            };
            match taken {
                Ok(Some(counter)) => {
                    // A stolen lease was valid for its owner until the failover time after its
                    // counter was first seen here; reading waits for that (see `readable_from`).
                    let readable_from = match (stolen, timing) {
                        (true, Some(t)) => {
                            clock.first_seen(shard).unwrap_or(sent_at) + t.failover_time
                        }
                        _ => sent_at,
                    };
                    tracing::info!(shard = %shard, from = ?lease.owner, stolen, "lease taken");
                    lock(held).insert(
                        shard.clone(),
                        HeldLease::new(
                            self.store.clone(),
                            shard,
                            me,
                            counter,
                            sent_at,
                            readable_from,
                            timing,
                        ),
                    );
                }
                Ok(None) => tracing::debug!(shard = %shard, "lease taken by another worker first"),
                Err(e) => tracing::warn!(shard = %shard, error = %e, "taking a lease failed"),
            }
        }
    }

    /// Lists shards, creates leases for new ones, records children, deletes finished parents' leases.
    /// Returns each shard's hash-key range.
    async fn sync_shards(
        &self,
        started_at: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> Result<HashMap<String, (u128, u128)>, ConsumerError> {
        let stream = &self.settings.stream;
        let shards = api::with_retry(&self.settings.reader.retry, cancel, "ListShards", || {
            api::list_shards(&self.client, stream)
        })
        .await?;
        let leases: HashMap<String, Lease> = self
            .store
            .list()
            .await?
            .into_iter()
            .map(|l| (l.shard_id.clone(), l))
            .collect();
        let tracked: HashSet<&str> = leases.keys().map(String::as_str).collect();
        let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
        for shard in parents_first(&shards) {
            if leases.contains_key(&shard.shard_id) {
                continue;
            }
            let checkpoint = self.first_checkpoint(shard, &tracked, started_at);
            let parents: Vec<String> = shard
                .parents()
                .filter(|p| listed.contains(p) || tracked.contains(p))
                .map(str::to_owned)
                .collect();
            let range = Some((
                shard.starting_hash_key.clone(),
                shard.ending_hash_key.clone(),
            ));
            if self
                .store
                .create(&Lease::new(
                    shard.shard_id.clone(),
                    checkpoint,
                    parents,
                    range,
                ))
                .await?
            {
                tracing::debug!(shard = %shard.shard_id, "lease created");
            }
        }
        // Children of ended shards, and finished parents whose children have all made progress.
        for (id, lease) in &leases {
            if !lease.checkpoint.is_shard_end() {
                continue;
            }
            let children: Vec<&ShardInfo> = shards
                .iter()
                .filter(|s| s.parents().any(|p| p == id))
                .collect();
            let names: Vec<String> = children.iter().map(|c| c.shard_id.clone()).collect();
            if !names.is_empty() && lease.children != names {
                self.store.set_children(id, &names).await?;
            }
            let children_started = !children.is_empty()
                && children.iter().all(|c| {
                    leases.get(&c.shard_id).is_some_and(|l| {
                        matches!(
                            l.checkpoint,
                            Checkpoint::Sequence { .. } | Checkpoint::ShardEnd
                        )
                    })
                });
            if children_started || !listed.contains(id.as_str()) {
                self.store.delete_ended(id).await?;
                tracing::debug!(shard = %id, "finished lease deleted");
            }
        }
        Ok(shards
            .iter()
            .filter_map(|s| {
                Some((
                    s.shard_id.clone(),
                    (
                        s.starting_hash_key.parse().ok()?,
                        s.ending_hash_key.parse().ok()?,
                    ),
                ))
            })
            .collect())
    }

    fn first_checkpoint(
        &self,
        shard: &ShardInfo,
        tracked: &HashSet<&str>,
        started_at: DateTime<Utc>,
    ) -> Checkpoint {
        if shard.parents().any(|p| tracked.contains(p)) {
            return Checkpoint::TrimHorizon;
        }
        if self.settings.initial_position == InitialPosition::Latest && !shard.is_open() {
            return Checkpoint::ShardEnd;
        }
        Checkpoint::initial(&self.settings.initial_position, &shard.shard_id, started_at)
    }
}

fn is_retryable(e: &ConsumerError) -> bool {
    match e {
        ConsumerError::Kinesis(k) => k.is_retryable(),
        ConsumerError::Store(s) => s.is_retryable(),
        _ => false,
    }
}

/// The leases this process holds, shared by the worker's loop and its renewer.
type Held = Arc<std::sync::Mutex<HashMap<String, Arc<HeldLease>>>>;

fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<String, Arc<HeldLease>>> {
    // Nothing panics while holding it; a poisoned map is still consistent.
    held.lock().unwrap_or_else(|p| p.into_inner())
}

/// How the balancer sees lease `l` from worker `me`, which holds it or not.
///
/// A lease recorded as `me`'s own that this process does not hold belongs to an earlier run under the
/// same id: in an embedded store (one process) it is free at once; in a shared table it is free once
/// expired, and until then counts as another worker's (so `me` does not count it as its share).
fn lease_view(me: &str, l: &Lease, mine: bool, scan: &Scan, shared: bool) -> LeaseView {
    if mine {
        return LeaseView {
            shard: l.shard_id.clone(),
            owner: Some(me.to_owned()),
            available: false,
        };
    }
    let expired = scan.expired.contains(&l.shard_id);
    match l.owner.as_deref() {
        Some(o) if o == me => {
            let free = !shared || expired;
            LeaseView {
                shard: l.shard_id.clone(),
                owner: (!free).then(|| format!("{me} (an earlier run)")),
                available: free,
            }
        }
        owner => LeaseView {
            shard: l.shard_id.clone(),
            owner: owner.map(str::to_owned),
            available: expired,
        },
    }
}

/// Renews every held lease each `interval`, and marks leases that could not be confirmed in time as
/// lost the moment they pass their deadline (which stops their shards); runs until `stop`.
async fn renew_loop(held: Held, interval: Duration, stop: CancellationToken) {
    let mut next = Instant::now() + interval;
    loop {
        let leases: Vec<Arc<HeldLease>> = lock(&held)
            .values()
            .filter(|h| !h.is_lost())
            .cloned()
            .collect();
        let wake = leases
            .iter()
            .filter_map(|h| h.start_by())
            .min()
            .map_or(next, |d| d.min(next));
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(wake) => {}
        }
        for h in &leases {
            // Marks a lease past its deadline as lost (and fires its token).
            let _ = h.is_lost();
        }
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + interval;
        let renewals = leases
            .iter()
            .filter(|h| !h.is_lost())
            .map(|h| async move { (h.shard().to_owned(), h.renew().await) });
        for (shard, renewed) in futures::future::join_all(renewals).await {
            match renewed {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(shard = %shard, error = %e, "lease renewal failed; will retry")
                }
            }
        }
    }
}

/// Sleeps `d` unless cancelled first; `true` if cancelled.
async fn wait(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = cancel.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

struct ShardTask {
    client: Client,
    stream: Arc<str>,
    shard: ShardId,
    checkpoint: Checkpoint,
    resume: kinesis_connectors_core::Resume,
    hash_range: Option<(u128, u128)>,
    settings: ReaderSettings,
    until_tip: bool,
    consumer_arn: Option<Arc<str>>,
    lease: Arc<HeldLease>,
    factory: Arc<dyn ShardRecordProcessorFactory>,
    cancel: CancellationToken,
    abandon: Arc<AtomicBool>,
    metrics: Arc<ConsumerMetrics>,
    requests: Arc<Semaphore>,
    budget: Arc<PageBudget>,
}

impl ShardTask {
    async fn run(self) -> Result<ReadOutcome, ConsumerError> {
        let processor_error = |e: crate::processor::ProcessorError| ConsumerError::Processor {
            shard: self.shard.to_string(),
            message: e.to_string(),
        };
        // A stolen lease: its previous owner may emit until its local expiry.
        if self.lease.readable_from() > Instant::now() {
            tracing::info!(
                shard = %self.shard,
                wait = ?self.lease.readable_from().saturating_duration_since(Instant::now()),
                "stolen lease; reading starts once its previous owner has surely stopped"
            );
            tokio::select! {
                () = tokio::time::sleep_until(self.lease.readable_from()) => {}
                () = self.cancel.cancelled() => return Ok(ReadOutcome::Cancelled),
                () = self.lease.lost_token().cancelled() => return Ok(ReadOutcome::Cancelled),
            }
        }
        let checkpointer = Checkpointer::new(self.lease.clone());
        let mut processor = self.factory.create_processor();
        processor
            .initialize(InitializationInput {
                shard_id: self.shard.clone(),
                checkpoint: self.checkpoint.clone(),
                resume: self.resume.clone(),
            })
            .await
            .map_err(processor_error)?;
        let ctx = ShardContext {
            client: &self.client,
            stream: &self.stream,
            shard: &self.shard,
            settings: &self.settings,
            hash_range: self.hash_range,
            until_tip: self.until_tip,
            cancel: &self.cancel,
            metrics: &self.metrics,
            budget: &self.budget,
        };
        let read = async {
            match &self.consumer_arn {
                None => {
                    let reader = ShardReader {
                        ctx,
                        requests: &self.requests,
                    };
                    reader
                        .run(&self.checkpoint, processor.as_mut(), &checkpointer)
                        .await
                }
                Some(arn) => {
                    let reader = crate::fanout::FanOutReader {
                        ctx,
                        consumer_arn: arn,
                    };
                    // Boxed: the fan-out reader's future (SDK event stream included) is several KB,
                    // and inline it would be part of every polling shard's task too.
                    Box::pin(reader.run(&self.checkpoint, processor.as_mut(), &checkpointer)).await
                }
            }
        };
        // A lost lease (taken, or expired here) stops reading and handing records on at once.
        let outcome = tokio::select! {
            outcome = read => outcome,
            () = self.lease.lost_token().cancelled() => Ok(ReadOutcome::Cancelled),
        };
        let lease_lost = || self.abandon.load(Ordering::SeqCst) || self.lease.is_lost();
        // A lost lease comes first: a shard read to its end by a worker that no longer holds it must
        // not try to checkpoint SHARD_END (the checkpoint would be refused).
        let reason = if lease_lost() {
            ShutdownReason::LeaseLost
        } else if matches!(outcome, Ok(ReadOutcome::ShardEnd)) {
            ShutdownReason::ShardEnd
        } else {
            ShutdownReason::Requested
        };
        // Finishing (a requested stop, or the shard's end) waits until what was read is delivered
        // and checkpointed. The lease can be lost meanwhile (taken, or not renewed within the
        // failover time): then nothing more of the shard may be emitted, so that wait would never
        // end, and a SIGTERM drain hung until its bound. The shard is abandoned instead.
        let shutdown = if matches!(reason, ShutdownReason::LeaseLost) {
            processor.shutdown(reason, &checkpointer).await
        } else {
            let finished = tokio::select! {
                r = processor.shutdown(reason, &checkpointer) => Some(r),
                () = self.lease.lost_token().cancelled() => None,
            };
            match finished {
                Some(r) => r,
                None => {
                    tracing::warn!(shard = %self.shard, "lease lost while finishing the shard; abandoning it to its next owner");
                    processor
                        .shutdown(ShutdownReason::LeaseLost, &checkpointer)
                        .await
                }
            }
        };
        // The lease may also be lost while reading or during the final checkpoint. Then the shard is
        // another worker's, which reads on from the last checkpoint that held. What failed because of
        // the loss (a refused checkpoint) is not this worker's error and must not stop it.
        if lease_lost() {
            tracing::info!(shard = %self.shard, "shard dropped: lease lost");
            return Ok(ReadOutcome::Cancelled);
        }
        let outcome = outcome?;
        shutdown.map_err(processor_error)?;
        if outcome == ReadOutcome::ShardEnd {
            tracing::info!(shard = %self.shard, "shard ended and delivered");
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_are_unique_per_call() {
        assert_ne!(
            LeaseSettings::default_worker_id(),
            LeaseSettings::default_worker_id()
        );
    }

    fn scan_of(leases: &[Lease], expired: &[&str]) -> Scan {
        Scan {
            leases: leases
                .iter()
                .map(|l| (l.shard_id.clone(), l.clone()))
                .collect(),
            expired: expired.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_lease_of_an_earlier_run_under_the_same_id_is_taken_back() {
        let mut l = Lease::new("s", Checkpoint::TrimHorizon, vec![], None);
        l.owner = Some("pod-0".into());
        // Embedded store: free at once.
        let v = lease_view("pod-0", &l, false, &scan_of(&[l.clone()], &[]), false);
        assert!(v.available && v.owner.is_none());
        // Shared table, not yet expired: another worker's for now (not counted as mine).
        let v = lease_view("pod-0", &l, false, &scan_of(&[l.clone()], &[]), true);
        assert!(!v.available);
        assert_ne!(v.owner.as_deref(), Some("pod-0"));
        let plan = plan_takes("pod-0", &[v], None, 1);
        assert!(plan.take.is_empty());
        // Shared table, expired: free.
        let v = lease_view("pod-0", &l, false, &scan_of(&[l.clone()], &["s"]), true);
        assert!(v.available);
        assert_eq!(
            plan_takes("pod-0", &[v], None, 1).take,
            vec!["s".to_string()]
        );
    }
}
