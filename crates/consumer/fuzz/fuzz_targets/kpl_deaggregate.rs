//! Fuzzes the KPL decoder: any bytes must either de-aggregate or be reported as not an aggregate —
//! never panic, never read out of bounds — and whatever de-aggregates must re-encode to an aggregate
//! that de-aggregates to the same user records.
#![no_main]

use bytes::Bytes;
use kinesis_connectors_consumer::kpl;
use libfuzzer_sys::fuzz_target;

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
    if let Ok(users) = kpl::deaggregate(input) {
        for u in &users {
            let _ = u.hash_key();
        }
        let again = kpl::deaggregate(&kpl::aggregate(&users)).expect("re-encoded aggregate decodes");
        assert_eq!(again, users);
    }
}
