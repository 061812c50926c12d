//! Building DynamoDB requests from writes, and fitting them to the service's limits.
//!
//! * One write per primary key per BatchWriteItem (DynamoDB refuses a request naming a key twice), and
//!   the one kept is the newest: `group_by_key` orders each key's writes by position.
//! * BatchWriteItem takes at most 25 requests and 16 MB (`chunk`).
//! * Ordering-safe writes are single PutItem / DeleteItem calls with the condition
//!   [`NEWER_CONDITION`] on the sequence attribute.

use std::collections::HashMap;
use std::ops::Range;

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};

use crate::mapping::{Op, Write};

/// The condition of ordering-safe writes: the stored item is absent, has no position yet, or was
/// written from an older record. `#seq` is the sequence attribute, `:seq` the write's position.
pub const NEWER_CONDITION: &str = "attribute_not_exists(#seq) OR #seq < :seq";

/// A batch's writes grouped by primary key: one group per key, each ordered oldest to newest (by
/// position, then by place in the batch for items of one record). Groups are in order of their newest
/// write's place in the batch.
pub(crate) fn group_by_key(writes: Vec<(usize, Write)>) -> Vec<Vec<(usize, Write)>> {
    let mut at: HashMap<Vec<u8>, usize> = HashMap::with_capacity(writes.len());
    let mut groups: Vec<Vec<(usize, Write)>> = Vec::with_capacity(writes.len());
    for (index, write) in writes {
        match at.get(&write.identity) {
            Some(&g) => groups[g].push((index, write)),
            None => {
                at.insert(write.identity.clone(), groups.len());
                groups.push(vec![(index, write)]);
            }
        }
    }
    for g in &mut groups {
        // Items arrive in shard order, so this is usually already sorted; items of several shards
        // (cross-shard batches) are ordered by sequence number.
        g.sort_by(|(ia, a), (ib, b)| a.sequence.cmp(&b.sequence).then(ia.cmp(ib)));
    }
    groups.sort_by_key(|g| g.last().map_or(0, |(i, _)| *i));
    groups
}

/// Splits writes of the given sizes, in order, into runs of at most `max_items` writes and
/// `max_bytes` estimated bytes (a write larger than `max_bytes` goes alone).
pub(crate) fn chunk(sizes: &[usize], max_items: usize, max_bytes: usize) -> Vec<Range<usize>> {
    const ENVELOPE: usize = 64; // {"RequestItems":{"TABLE":[...]}}, the table name aside
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = ENVELOPE;
    for (i, size) in sizes.iter().enumerate() {
        let full = i - start >= max_items.max(1) || (i > start && bytes + size + 1 > max_bytes);
        if full {
            out.push(start..i);
            start = i;
            bytes = ENVELOPE;
        }
        bytes += size + 1;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// The BatchWriteItem entry of a write.
pub(crate) fn write_request(w: &Write) -> Result<WriteRequest, String> {
    Ok(match &w.op {
        Op::Put(item) => WriteRequest::builder()
            .put_request(
                PutRequest::builder()
                    .set_item(Some(item.clone()))
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .build(),
        Op::Delete => WriteRequest::builder()
            .delete_request(
                DeleteRequest::builder()
                    .set_key(Some(w.key.clone()))
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .build(),
    })
}

/// The key attributes of an entry DynamoDB returned in `UnprocessedItems`.
pub(crate) fn request_attributes(r: &WriteRequest) -> Option<&HashMap<String, AttributeValue>> {
    r.put_request()
        .map(PutRequest::item)
        .or_else(|| r.delete_request().map(DeleteRequest::key))
}

/// `ExpressionAttributeNames` and `ExpressionAttributeValues` of [`NEWER_CONDITION`].
pub(crate) fn condition_parts(
    sequence_attribute: &str,
    sequence: &str,
) -> (HashMap<String, String>, HashMap<String, AttributeValue>) {
    (
        HashMap::from([("#seq".to_owned(), sequence_attribute.to_owned())]),
        HashMap::from([(":seq".to_owned(), AttributeValue::S(sequence.to_owned()))]),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn write(key: &str, seq: &str) -> Write {
        Write {
            identity: key.as_bytes().to_vec(),
            key: HashMap::from([("id".to_owned(), AttributeValue::S(key.to_owned()))]),
            op: Op::Delete,
            sequence: seq.to_owned(),
            size: 10,
        }
    }

    #[test]
    fn groups_hold_each_key_once_newest_last() {
        let writes = vec![
            (0, write("a", "003")),
            (1, write("b", "001")),
            (2, write("a", "001")), // another shard's older record of key a
            (3, write("c", "002")),
            (4, write("a", "005")),
            (5, write("a", "005")), // a second item of the same record: the later one wins
        ];
        let groups = group_by_key(writes);
        let shape: Vec<Vec<usize>> = groups
            .iter()
            .map(|g| g.iter().map(|(i, _)| *i).collect())
            .collect();
        assert_eq!(shape, vec![vec![1], vec![3], vec![2, 0, 4, 5]]);
    }

    #[test]
    fn chunks_respect_count_and_bytes() {
        assert_eq!(chunk(&[1; 60], 25, 1 << 20), vec![0..25, 25..50, 50..60]);
        assert_eq!(chunk(&[], 25, 1 << 20), Vec::<Range<usize>>::new());
        // 400 bytes each, 1000 bytes per request (64 for the envelope): two per chunk.
        assert_eq!(chunk(&[400; 5], 25, 1000), vec![0..2, 2..4, 4..5]);
        // An oversized write goes alone, and does not drag its neighbours along.
        assert_eq!(chunk(&[10, 5000, 10], 25, 1000), vec![0..1, 1..2, 2..3]);
        for n in 0..200usize {
            let sizes: Vec<usize> = (0..n).map(|i| (i * 7919) % 900 + 1).collect();
            let chunks = chunk(&sizes, 25, 4000);
            assert_eq!(chunks.iter().map(|r| r.len()).sum::<usize>(), n);
            for r in &chunks {
                assert!(r.len() <= 25);
                assert!(
                    r.len() == 1
                        || sizes[r.clone()].iter().map(|s| s + 1).sum::<usize>() + 64 <= 4000
                );
            }
        }
    }

    #[test]
    fn requests_carry_the_item_or_the_key() {
        let mut w = write("a", "1");
        let r = write_request(&w).unwrap();
        assert_eq!(request_attributes(&r), Some(&w.key));
        assert!(r.put_request().is_none());
        w.op = Op::Put(HashMap::from([
            ("id".to_owned(), AttributeValue::S("a".into())),
            ("x".to_owned(), AttributeValue::N("1".into())),
        ]));
        let r = write_request(&w).unwrap();
        assert_eq!(request_attributes(&r).unwrap().len(), 2);
        let (names, values) = condition_parts("seq", "001:1:0");
        assert_eq!(names["#seq"], "seq");
        assert_eq!(values[":seq"], AttributeValue::S("001:1:0".into()));
    }
}
