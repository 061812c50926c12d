//! Leases: who reads which shard, and where it is.
//!
//! A lease is one row per shard (KCL's lease table layout): the shard's checkpoint, its owner, and a
//! `leaseCounter` that every write bumps. Every renewal, take, release and checkpoint is conditional on
//! the counter the writer last saw, so a worker that lost a lease can no longer write to it (fencing).
//! Expiry is judged by each worker's own clock: a lease whose counter has not changed for longer than the
//! failover time, as observed locally, is expired — workers need no synchronised clocks.
//!
//! [`LeaseStore`] is implemented by the embedded [`FileCheckpointStore`](crate::FileCheckpointStore) (one
//! process owns every lease; nothing expires) and by the DynamoDB lease table
//! ([`DynamoDbLeaseStore`](crate::DynamoDbLeaseStore)) that lets several processes share a stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::StoreError;
use crate::position::Checkpoint;
use kinesis_connectors_core::Resume;

/// One shard's lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The shard (KCL: `leaseKey`).
    pub shard_id: String,
    /// The worker holding it, if any (`leaseOwner`).
    pub owner: Option<String>,
    /// Bumped by every write (`leaseCounter`).
    pub counter: u64,
    /// Where reading resumes (`checkpoint`, `checkpointSubSequenceNumber`).
    pub checkpoint: Checkpoint,
    /// Owner changes since the last checkpoint (`ownerSwitchesSinceCheckpoint`).
    pub owner_switches: u64,
    /// The shard's parents (`parentShardId`).
    pub parents: Vec<String>,
    /// The shard's children, once known (`childShardIds`).
    pub children: Vec<String>,
    /// The shard's hash-key range (`startingHashKey`, `endingHashKey`).
    pub hash_range: Option<(String, String)>,
    /// When the checkpoint last changed, where the store records it.
    pub updated_at: Option<DateTime<Utc>>,
    /// Why the stored row could not be read, if it could not: such a lease is never taken or read,
    /// and its children wait (reading them first would break per-key order across a reshard).
    pub unreadable: Option<String>,
    /// What the shard's next reader needs beyond the checkpoint to re-form the batches already
    /// emitted (see [`Resume`]); empty in the common case.
    pub resume: Resume,
}

impl Lease {
    /// A new, unowned lease.
    pub fn new(
        shard_id: impl Into<String>,
        checkpoint: Checkpoint,
        parents: Vec<String>,
        hash_range: Option<(String, String)>,
    ) -> Self {
        Self {
            shard_id: shard_id.into(),
            owner: None,
            counter: 0,
            checkpoint,
            owner_switches: 0,
            parents,
            children: Vec::new(),
            hash_range,
            updated_at: None,
            unreadable: None,
            resume: Resume::default(),
        }
    }
}

/// Where leases live; see the module documentation. All writes but `create` are conditional on
/// `expected` (the counter the caller last saw); `Ok(None)` / `Ok(false)` means the condition failed.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Every lease (a consistent read).
    async fn list(&self) -> Result<Vec<Lease>, StoreError>;

    /// Creates a lease unless one exists for the shard; `true` if created.
    async fn create(&self, lease: &Lease) -> Result<bool, StoreError>;

    /// Takes the lease for `owner` if its counter is still `expected`; returns the new counter.
    async fn take(
        &self,
        shard: &str,
        expected: u64,
        owner: &str,
    ) -> Result<Option<u64>, StoreError>;

    /// Renews a held lease; `None` when it was lost.
    async fn renew(
        &self,
        shard: &str,
        expected: u64,
        owner: &str,
    ) -> Result<Option<u64>, StoreError>;

    /// Gives a held lease up (owner cleared) so another worker takes it at once.
    async fn release(&self, shard: &str, expected: u64, owner: &str) -> Result<bool, StoreError>;

    /// Writes a checkpoint through a held lease (the stored [`Resume`] is cleared); `None` when the
    /// lease was lost.
    async fn checkpoint(
        &self,
        shard: &str,
        expected: u64,
        owner: &str,
        checkpoint: &Checkpoint,
    ) -> Result<Option<u64>, StoreError> {
        self.save(shard, expected, owner, Some(checkpoint), &Resume::default())
            .await
    }

    /// Writes a shard's progress through a held lease in one conditional write: the checkpoint (kept
    /// as it is when `None`) and the [`Resume`]. `None` when the lease was lost.
    async fn save(
        &self,
        shard: &str,
        expected: u64,
        owner: &str,
        checkpoint: Option<&Checkpoint>,
        resume: &Resume,
    ) -> Result<Option<u64>, StoreError>;

    /// Records a finished shard's children.
    async fn set_children(&self, shard: &str, children: &[String]) -> Result<(), StoreError>;

    /// Deletes the lease of a shard that ended (only if its checkpoint is SHARD_END).
    async fn delete_ended(&self, shard: &str) -> Result<(), StoreError>;

    /// Whether several processes share the store (leases expire and are balanced); `false` for the
    /// embedded store, whose single process owns every lease.
    fn is_shared(&self) -> bool;

    /// Where the store lives, for logs and `status`.
    fn describe(&self) -> String;
}

/// Timing of lease management.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// This worker's name in the table (`leaseOwner`).
    pub worker_id: String,
    /// A lease whose counter has not moved for this long is expired.
    pub failover_time: Duration,
    /// How often held leases are renewed (a third of the failover time by default).
    pub renew_interval: Duration,
    /// How often the table is scanned to take expired or unowned leases and balance (a tenth of the
    /// failover time, between 250 ms and 2 s: a lease released on shutdown is taken within this). Each
    /// scan reads the whole table, so its cost grows with the number of shards.
    pub take_interval: Duration,
    /// Most leases this worker holds (unfinished shards).
    pub max_leases: Option<usize>,
    /// Most leases stolen from other workers per scan.
    pub max_steals_per_scan: usize,
}

/// Default failover time (as the KCL's).
pub const DEFAULT_FAILOVER_TIME: Duration = Duration::from_secs(10);

impl LeaseSettings {
    /// Settings for `worker_id` with the given failover time and the intervals derived from it.
    pub fn new(worker_id: impl Into<String>, failover_time: Duration) -> Self {
        Self {
            worker_id: worker_id.into(),
            failover_time,
            renew_interval: failover_time / 3,
            take_interval: (failover_time / 10)
                .clamp(Duration::from_millis(250), Duration::from_secs(2)),
            max_leases: None,
            max_steals_per_scan: 1,
        }
    }

    /// A worker id unique to this process: host name, process id and a random suffix.
    pub fn default_worker_id() -> String {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "worker".into());
        format!(
            "{host}-{}-{:04x}",
            std::process::id(),
            rand::random::<u16>()
        )
    }
}

/// A lease this worker holds: the counter it last wrote, shared by renewals and checkpoints (one write
/// at a time), when its ownership was last confirmed, and whether it was lost.
///
/// **Local expiry.** Another worker may take a lease once it has seen the lease's counter unchanged
/// for the failover time. The counter it sees was written by this worker's last successful write, sent
/// at `confirmed_at`, so nobody can take the lease before `confirmed_at + failover_time`. A worker that
/// cannot confirm its lease (its route to the table is down, the table is slow) therefore stops
/// starting emits of the shard at [`LeaseTiming::start_margin`] before that instant, abandons one still
/// running shortly before it ([`HeldLease::fence`]), and counts the lease as lost from then on — as the
/// KCL does. Every store call made through the lease has a timeout shorter than the renewal interval, so
/// one slow call cannot hold up the renewals.
#[derive(Debug)]
pub struct HeldLease {
    shard: String,
    owner: String,
    counter: Mutex<u64>,
    lost: AtomicBool,
    lost_token: CancellationToken,
    confirmed_at: std::sync::Mutex<Instant>,
    readable_from: Instant,
    timing: Option<LeaseTiming>,
    store: Arc<dyn LeaseStore>,
}

/// How a held lease of a shared store expires locally; see [`HeldLease`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// Time after which another worker may take a lease it saw unchanged.
    pub failover_time: Duration,
    /// No emit starts later than this before the lease could be taken.
    pub start_margin: Duration,
    /// An emit still running this long before the lease could be taken is abandoned.
    pub stop_margin: Duration,
    /// Timeout of each store call made through the lease (renew, checkpoint, release).
    pub call_timeout: Duration,
}

impl LeaseTiming {
    /// The timing derived from lease settings: emits start until two thirds of the failover time
    /// after the last confirmation (a healthy lease is renewed every third), are abandoned at 95 %,
    /// and each call may take half the renewal interval.
    pub fn from_settings(settings: &LeaseSettings) -> Self {
        let failover = settings.failover_time;
        Self {
            failover_time: failover,
            start_margin: settings.renew_interval.min(failover / 2),
            stop_margin: failover / 20,
            call_timeout: (settings.renew_interval / 2).max(Duration::from_millis(50)),
        }
    }
}

impl std::fmt::Debug for dyn LeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl HeldLease {
    /// A lease just taken with `counter` by a write sent at `confirmed_at`; `timing` is `None` for a
    /// store only this process uses (nothing expires). `readable_from` is when the previous owner is
    /// sure to have stopped emitting the shard: at once for a lease that was free or expired, the
    /// previous owner's local expiry for a stolen one (see [`HeldLease::readable_from`]).
    pub fn new(
        store: Arc<dyn LeaseStore>,
        shard: &str,
        owner: &str,
        counter: u64,
        confirmed_at: Instant,
        readable_from: Instant,
        timing: Option<LeaseTiming>,
    ) -> Arc<Self> {
        Arc::new(Self {
            shard: shard.to_owned(),
            owner: owner.to_owned(),
            counter: Mutex::new(counter),
            lost: AtomicBool::new(false),
            lost_token: CancellationToken::new(),
            confirmed_at: std::sync::Mutex::new(confirmed_at),
            readable_from,
            timing,
            store,
        })
    }

    /// When this worker may start reading the shard. A lease stolen from a live worker was still
    /// valid for it: if its route to the table is down it cannot learn of the steal, and goes on
    /// emitting until its local expiry — at the latest the failover time after the thief first saw
    /// the counter it replaced. Reading starts after that, so two workers never emit one shard.
    pub fn readable_from(&self) -> Instant {
        self.readable_from
    }

    /// The shard.
    pub fn shard(&self) -> &str {
        &self.shard
    }

    /// Whether the lease was lost: another worker took it, it was released, or it could not be
    /// confirmed in time (local expiry).
    pub fn is_lost(&self) -> bool {
        if self.lost.load(Ordering::SeqCst) {
            return true;
        }
        if self
            .expires_at()
            .is_some_and(|at| Instant::now() + self.start_margin() >= at)
        {
            self.expire_locally();
            return true;
        }
        false
    }

    /// Fires when the lease is lost (including local expiry, once noticed).
    pub fn lost_token(&self) -> &CancellationToken {
        &self.lost_token
    }

    /// The earliest instant another worker may take the lease (`None`: never, an embedded store).
    pub fn expires_at(&self) -> Option<Instant> {
        let t = self.timing?;
        Some(self.confirmed() + t.failover_time)
    }

    /// When this process must stop starting emits of the shard (`None`: never).
    pub fn start_by(&self) -> Option<Instant> {
        self.expires_at().map(|at| at - self.start_margin())
    }

    /// Until when this process may deliver the shard's records; `None` for an embedded store.
    pub fn fence(&self) -> Option<kinesis_connectors_core::Fence> {
        let t = self.timing?;
        let at = self.expires_at()?;
        if self.lost.load(Ordering::SeqCst) {
            // Already behind every caller's `now` (the last confirmation was sent in the past): a
            // fence at the instant of this call would still let a caller that read its clock just
            // before start an emit.
            let past = self.confirmed();
            return Some(kinesis_connectors_core::Fence {
                start_by: past,
                stop_by: past,
            });
        }
        Some(kinesis_connectors_core::Fence {
            start_by: at - t.start_margin,
            stop_by: at - t.stop_margin,
        })
    }

    fn start_margin(&self) -> Duration {
        self.timing.map_or(Duration::ZERO, |t| t.start_margin)
    }

    fn confirmed(&self) -> Instant {
        *self.confirmed_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn confirm(&self, sent_at: Instant) {
        let mut c = self.confirmed_at.lock().unwrap_or_else(|p| p.into_inner());
        if sent_at > *c {
            *c = sent_at;
        }
    }

    /// The counter this worker last wrote.
    pub async fn counter(&self) -> u64 {
        *self.counter.lock().await
    }

    pub(crate) fn mark_lost(&self) {
        if !self.lost.swap(true, Ordering::SeqCst) {
            tracing::warn!(shard = %self.shard, "lease lost to another worker");
        }
        self.lost_token.cancel();
    }

    fn expire_locally(&self) {
        if !self.lost.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                shard = %self.shard,
                "lease not confirmed within the failover time; stopping the shard before another worker may take it"
            );
        }
        self.lost_token.cancel();
    }

    /// Runs one store call with the lease's call timeout.
    async fn call<T>(
        &self,
        what: &'static str,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match self.timing {
            None => f.await,
            Some(t) => tokio::time::timeout(t.call_timeout, f)
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Timeout {
                        operation: what,
                        after: t.call_timeout,
                    })
                }),
        }
    }

    /// Renews the lease; `false` if it was lost.
    pub async fn renew(&self) -> Result<bool, StoreError> {
        if self.is_lost() {
            return Ok(false);
        }
        let mut c = match self.timing {
            // A checkpoint write in progress holds the counter; it confirms the lease too.
            Some(t) => match tokio::time::timeout(t.call_timeout, self.counter.lock()).await {
                Ok(c) => c,
                Err(_) => return Ok(!self.is_lost()),
            },
            None => self.counter.lock().await,
        };
        let sent_at = Instant::now();
        match self
            .call("renew", self.store.renew(&self.shard, *c, &self.owner))
            .await?
        {
            Some(n) => {
                *c = n;
                self.confirm(sent_at);
                Ok(true)
            }
            None => {
                self.mark_lost();
                Ok(false)
            }
        }
    }

    /// Writes a checkpoint; fails with [`StoreError::LeaseLost`] when fenced off.
    pub async fn checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.save(Some(checkpoint), &Resume::default()).await
    }

    /// Writes the shard's progress (checkpoint, kept when `None`, and resume state); fails with
    /// [`StoreError::LeaseLost`] when fenced off.
    pub async fn save(
        &self,
        checkpoint: Option<&Checkpoint>,
        resume: &Resume,
    ) -> Result<(), StoreError> {
        let lost = || StoreError::LeaseLost {
            shard: self.shard.clone(),
        };
        if self.is_lost() {
            return Err(lost());
        }
        let mut c = self.counter.lock().await;
        let sent_at = Instant::now();
        match self
            .call(
                "checkpoint",
                self.store
                    .save(&self.shard, *c, &self.owner, checkpoint, resume),
            )
            .await?
        {
            Some(n) => {
                *c = n;
                self.confirm(sent_at);
                Ok(())
            }
            None => {
                self.mark_lost();
                Err(lost())
            }
        }
    }

    /// Gives the lease up (graceful hand-off); afterwards it counts as lost here.
    pub async fn release(&self) -> Result<bool, StoreError> {
        if self.lost.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let c = self.counter.lock().await;
        let released = self
            .call("release", self.store.release(&self.shard, *c, &self.owner))
            .await;
        self.lost.store(true, Ordering::SeqCst);
        self.lost_token.cancel();
        released
    }
}

/// Locally observed lease counters, for expiry by this worker's own clock.
#[derive(Debug, Default)]
pub struct ExpiryClock {
    seen: HashMap<String, (u64, Instant)>,
}

impl ExpiryClock {
    /// When the scans first saw the shard's current counter (its owner's last write was sent before).
    pub fn first_seen(&self, shard: &str) -> Option<Instant> {
        self.seen.get(shard).map(|(_, at)| *at)
    }

    /// Records what a scan saw; returns the shards whose lease is expired (or unowned).
    pub fn observe(&mut self, leases: &[Lease], now: Instant, failover: Duration) -> Vec<String> {
        let mut expired = Vec::new();
        let mut next = HashMap::with_capacity(leases.len());
        for l in leases {
            let first_seen = match self.seen.get(&l.shard_id) {
                Some((counter, at)) if *counter == l.counter => *at,
                _ => now,
            };
            if l.owner.is_none() || now.duration_since(first_seen) > failover {
                expired.push(l.shard_id.clone());
            }
            next.insert(l.shard_id.clone(), (l.counter, first_seen));
        }
        self.seen = next;
        expired
    }
}

/// One lease as the balancer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseView {
    /// The shard.
    pub shard: String,
    /// Its owner (`None` or expired owners count as available).
    pub owner: Option<String>,
    /// Whether it can be taken without stealing (unowned, or its owner stopped renewing).
    pub available: bool,
}

/// What the balancer decided for this worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakePlan {
    /// Available leases to take.
    pub take: Vec<String>,
    /// Leases to steal from busier workers.
    pub steal: Vec<String>,
}

/// Decides which leases `me` takes: available ones first up to its target share
/// (`ceil(leases / workers)`, workers being the live owners plus `me`, capped by `max_leases`), then, if
/// still below target, up to `max_steals` from the busiest worker when that worker holds more than the
/// target, or holds the target while `me` is two or more below it. Repeated by every worker, this
/// converges to shares that differ by at most one.
pub fn plan_takes(
    me: &str,
    leases: &[LeaseView],
    max_leases: Option<usize>,
    max_steals: usize,
) -> TakePlan {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    counts.insert(me, 0);
    for l in leases {
        if let (Some(o), false) = (&l.owner, l.available) {
            *counts.entry(o.as_str()).or_default() += 1;
        }
    }
    let workers = counts.len();
    let mut target = leases.len().div_ceil(workers.max(1));
    if let Some(max) = max_leases {
        target = target.min(max);
    }
    let mine = counts[me];
    let mut plan = TakePlan {
        take: Vec::new(),
        steal: Vec::new(),
    };
    if mine >= target {
        return plan;
    }
    let mut need = target - mine;
    // Available leases, in a per-worker order so that racing workers tend to pick different ones.
    let mut available: Vec<&LeaseView> = leases
        .iter()
        .filter(|l| l.available && l.owner.as_deref() != Some(me))
        .collect();
    available.sort_by_key(|l| spread(me, &l.shard));
    for l in available.into_iter().take(need) {
        plan.take.push(l.shard.clone());
    }
    need -= plan.take.len();
    if need == 0 || !plan.take.is_empty() {
        return plan;
    }
    let Some((busiest, &busiest_count)) = counts
        .iter()
        .filter(|(w, _)| **w != me)
        .max_by_key(|(w, c)| (**c, std::cmp::Reverse(**w)))
    else {
        return plan;
    };
    if busiest_count > target || (busiest_count == target && mine + 1 < target) {
        let mut theirs: Vec<&LeaseView> = leases
            .iter()
            .filter(|l| l.owner.as_deref() == Some(*busiest) && !l.available)
            .collect();
        theirs.sort_by_key(|l| spread(me, &l.shard));
        let can_give = (busiest_count - mine.min(busiest_count)) / 2;
        let n = need.min(max_steals).min(can_give.max(1));
        plan.steal = theirs
            .into_iter()
            .take(n)
            .map(|l| l.shard.clone())
            .collect();
    }
    plan
}

/// A stable per-worker shuffle key.
fn spread(me: &str, shard: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in me.bytes().chain([0]).chain(shard.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view(shard: usize, owner: Option<usize>) -> LeaseView {
        LeaseView {
            shard: format!("s{shard}"),
            owner: owner.map(|o| format!("w{o}")),
            available: owner.is_none(),
        }
    }

    #[test]
    fn takes_free_leases_up_to_the_target_then_steals_one() {
        let leases: Vec<_> = (0..8).map(|i| view(i, None)).collect();
        assert_eq!(
            plan_takes("w0", &leases, None, 1).take.len(),
            8,
            "alone: all of them"
        );
        let leases: Vec<_> = (0..8).map(|i| view(i, Some(1))).collect();
        let p = plan_takes("w0", &leases, None, 1);
        assert!(p.take.is_empty());
        assert_eq!(p.steal.len(), 1, "steals one at a time");
        assert_eq!(plan_takes("w0", &leases, None, 3).steal.len(), 3);
        assert!(
            plan_takes("w0", &leases, Some(0), 1).steal.is_empty(),
            "max_leases caps the target"
        );
    }

    proptest! {
        /// For any number of workers and leases and any starting assignment, workers that each run the
        /// planner in turn (seeing the others' takes) converge to shares that differ by at most one.
        #[test]
        fn the_balancer_converges_to_max_minus_min_at_most_one(
            workers in 1usize..8,
            assignment in proptest::collection::vec(proptest::option::of(0usize..8), 0..60),
            steals in 1usize..3,
        ) {
            let mut owner: Vec<Option<usize>> = assignment.into_iter().map(|o| o.filter(|w| *w < workers)).collect();
            let leases = owner.len();
            for _round in 0..(leases * 4 + 10) {
                let mut changed = false;
                for w in 0..workers {
                    let views: Vec<LeaseView> = owner.iter().enumerate().map(|(i, o)| view(i, *o)).collect();
                    let plan = plan_takes(&format!("w{w}"), &views, None, steals);
                    for s in plan.take.iter().chain(&plan.steal) {
                        let i: usize = s[1..].parse().unwrap();
                        owner[i] = Some(w);
                        changed = true;
                    }
                }
                if !changed { break; }
            }
            let mut counts = vec![0usize; workers];
            for o in &owner {
                prop_assert!(o.is_some(), "a lease stayed unowned");
                counts[o.unwrap()] += 1;
            }
            let (max, min) = (counts.iter().max().unwrap(), counts.iter().min().unwrap());
            prop_assert!(max - min <= 1, "counts {:?}", counts);
        }
    }

    /// A lost lease's fence is behind every clock reading a caller may hold: the runner reads its
    /// clock, then asks the fence, and must not start an emit (a fence at the instant of the call did).
    #[tokio::test]
    async fn a_lost_lease_fences_off_a_caller_that_read_its_clock_first() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn LeaseStore> = Arc::new(
            crate::store::FileCheckpointStore::open(dir.path().join("c.json"), "s").unwrap(),
        );
        let timing = LeaseTiming::from_settings(&LeaseSettings::new("me", DEFAULT_FAILOVER_TIME));
        let now = Instant::now();
        let held = HeldLease::new(store, "shard", "me", 1, now, now, Some(timing));
        assert!(held.fence().unwrap().allows_start(Instant::now()));
        held.expire_locally();
        let before = Instant::now();
        let fence = held.fence().unwrap();
        assert!(
            !fence.allows_start(before),
            "{fence:?} lets an emit start at {before:?}"
        );
        assert!(fence.stop_by <= before);
    }

    #[test]
    fn expiry_is_judged_by_the_local_clock() {
        let mut clock = ExpiryClock::default();
        let t0 = Instant::now();
        let mut lease = Lease::new("s", Checkpoint::TrimHorizon, vec![], None);
        lease.owner = Some("w1".into());
        lease.counter = 5;
        let failover = Duration::from_secs(10);
        assert!(
            clock
                .observe(std::slice::from_ref(&lease), t0, failover)
                .is_empty()
        );
        assert!(
            clock
                .observe(
                    std::slice::from_ref(&lease),
                    t0 + Duration::from_secs(9),
                    failover
                )
                .is_empty()
        );
        lease.counter = 6; // renewed: the clock restarts
        assert!(
            clock
                .observe(
                    std::slice::from_ref(&lease),
                    t0 + Duration::from_secs(11),
                    failover
                )
                .is_empty()
        );
        assert_eq!(
            clock.observe(
                std::slice::from_ref(&lease),
                t0 + Duration::from_secs(22),
                failover
            ),
            vec!["s"]
        );
        lease.owner = None;
        assert_eq!(
            clock.observe(&[lease], t0 + Duration::from_secs(22), failover),
            vec!["s"]
        );
    }
}
