//! Fuzzes the KPL decoder: any bytes must either de-aggregate or be reported as not an aggregate —
//! never panic, never read out of bounds — whatever de-aggregates must re-encode to an aggregate that
//! de-aggregates to the same user records, and what an aggregate expands to must stay within a small
//! multiple of its size (a crafted aggregate once made one 125 KB record take 685 MB).
//!
//! Run with inputs up to the 1 MiB a Kinesis record may hold:
//! `cargo +nightly fuzz run kpl_deaggregate -- -max_len=1048576`
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use kinesis_connectors_consumer::kpl;
use libfuzzer_sys::fuzz_target;

/// Counts the bytes live on the heap and the peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What de-aggregating `n` bytes may allocate at its peak, beyond the input: a user record costs at
/// least 6 bytes of input and at most ~160 bytes of bookkeeping while it is decoded.
fn expansion_bound(n: usize) -> usize {
    32 * n + 64 * 1024
}

fuzz_target!(|data: &[u8]| {
    // Raw input, and the same input framed as an aggregate with a valid checksum (so the protobuf
    // parser is reached, not only the checksum check).
    let raw = Bytes::copy_from_slice(data);
    check(&raw);
    let mut framed = kpl::KPL_MAGIC.to_vec();
    framed.extend_from_slice(data);
    framed.extend_from_slice(&md5::compute(data).0);
    check(&Bytes::from(framed));
});

fn check(input: &Bytes) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let result = kpl::deaggregate(input);
    let grown = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    assert!(
        grown <= expansion_bound(input.len()),
        "{} input bytes took {grown} bytes to de-aggregate",
        input.len()
    );
    if let Ok(users) = result {
        for u in &users {
            let _ = u.hash_key();
        }
        let again = kpl::deaggregate(&kpl::aggregate(&users)).expect("re-encoded aggregate decodes");
        assert_eq!(again, users);
    }
}
