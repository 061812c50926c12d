//! What a KPL aggregate expands to is bounded by its size, for aggregates up to the 1 MiB a Kinesis
//! record may hold (issue 14, defect 4: a crafted 125 KB aggregate — one 64 KiB partition key shared
//! by 10,000 empty user records — took 685 MB). The same check as the `kpl_deaggregate` fuzz target,
//! over structured aggregates (valid framing and checksum, so the protobuf parser is reached) with
//! random key tables, hash keys, record counts and byte flips; it runs with every `cargo test`.
//!
//! One test in this binary: the allocator's peak is process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use kinesis_connectors_consumer::kpl;
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use proptest::prelude::*;
use std::alloc::System;

/// Counts the peak of bytes allocated since the last reset (a wrapper crate: `unsafe` is forbidden here).
#[global_allocator]
static GLOBAL: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The fuzz target's bound: a user record costs at least 6 bytes of input and a fixed ~160 bytes of
/// bookkeeping at most while it is decoded.
fn expansion_bound(n: usize) -> usize {
    32 * n + 64 * 1024
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(num: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint((num << 3) | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// The shape of one aggregate: its key table, hash keys, records, and bytes flipped afterwards.
#[derive(Debug, Clone)]
struct Shape {
    keys: Vec<usize>,
    hash_keys: Vec<String>,
    /// (copies, partition key index, explicit hash key index, data length)
    records: Vec<(usize, u64, Option<u64>, usize)>,
    flips: Vec<(usize, u8)>,
}

fn shape() -> impl Strategy<Value = Shape> {
    let key_len = prop_oneof![4 => 0usize..=300, 1 => 60_000usize..=70_000];
    let hash_key = prop_oneof![
        "[0-9]{1,39}",
        Just("340282366920938463463374607431768211456".to_owned()),
        "[0-9a-z-]{0,45}",
    ];
    // Runs of identical records: up to ~170,000 empty ones make a 1 MiB aggregate.
    let run = (
        prop_oneof![3 => 1usize..=50, 1 => 1_000usize..=170_000],
        0u64..5,
        proptest::option::of(0u64..3),
        prop_oneof![3 => 0usize..=64, 1 => 1_000usize..=200_000],
    );
    (
        proptest::collection::vec(key_len, 1..4),
        proptest::collection::vec(hash_key, 0..3),
        proptest::collection::vec(run, 1..6),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    )
        .prop_map(|(keys, hash_keys, records, flips)| Shape {
            keys,
            hash_keys,
            records,
            flips,
        })
}

/// The aggregate of `shape`, cut at 1 MiB (a Kinesis record's limit), framed with a valid checksum.
fn aggregate_of(shape: &Shape) -> Bytes {
    const LIMIT: usize = 1 << 20;
    let mut body = Vec::new();
    for len in &shape.keys {
        field(1, "k".repeat(*len).as_bytes(), &mut body);
    }
    for h in &shape.hash_keys {
        field(2, h.as_bytes(), &mut body);
    }
    'records: for (copies, pk, ehk, data) in &shape.records {
        let mut record = Vec::new();
        record.push(0x08);
        varint(*pk, &mut record);
        if let Some(e) = ehk {
            record.push(0x10);
            varint(*e, &mut record);
        }
        field(3, &vec![b'd'; *data], &mut record);
        for _ in 0..*copies {
            if body.len() + record.len() + 8 > LIMIT - 20 {
                break 'records;
            }
            field(3, &record, &mut body);
        }
    }
    for (at, byte) in &shape.flips {
        if !body.is_empty() {
            let i = at % body.len();
            body[i] ^= byte;
        }
    }
    let mut framed = kpl::KPL_MAGIC.to_vec();
    framed.extend_from_slice(&body);
    framed.extend_from_slice(&md5::compute(&body).0);
    Bytes::from(framed)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn an_aggregate_of_up_to_one_mib_expands_to_a_small_multiple_of_its_size(shape in shape()) {
        let input = aggregate_of(&shape);
        GLOBAL.reset_peak_memory();
        let result = kpl::deaggregate(&input);
        let grown = GLOBAL.get_peak_memory();
        prop_assert!(
            grown <= expansion_bound(input.len()),
            "{} input bytes took {} bytes to de-aggregate ({} user records)",
            input.len(),
            grown,
            result.as_ref().map_or(0, Vec::len)
        );
        if let Ok(users) = &result {
            // Within Kinesis's limits, whatever decoded.
            for u in users {
                prop_assert!(u.partition_key.chars().count() <= kpl::MAX_PARTITION_KEY_CHARS);
                let _ = u.hash_key();
            }
        }
    }
}
