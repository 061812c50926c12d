//! KPL de-aggregation: records written by the Kinesis Producer Library in its aggregated format.
//!
//! An aggregated record is the magic `F3 89 9A C2`, a protobuf `AggregatedRecord` (a table of partition
//! keys, a table of explicit hash keys, and the user records referring to them), and the MD5 of the
//! protobuf bytes. A record without the magic, too short, or whose MD5 does not match is a plain record
//! and is delivered as it is; so is one whose protobuf does not parse (with a warning).
//!
//! User records get sub-sequence numbers 0, 1, 2, … (their index in the aggregate); checkpoints store
//! them, and a restart inside an aggregate resumes after the last delivered user record.
//!
//! Like the KCL, a user record whose hash key (its explicit hash key, else the MD5 of its partition key)
//! is outside the shard's hash-key range is discarded: it can only be there because the KPL aggregated
//! against a stale shard map, and the KPL re-sends such records to the shard that owns them.

use std::sync::Arc;

use bytes::Bytes;

/// The four bytes that open a KPL aggregated record.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const MD5_LEN: usize = 16;
/// Longest partition key Kinesis accepts, in characters (`PutRecord`: 1 to 256 Unicode characters).
pub const MAX_PARTITION_KEY_CHARS: usize = 256;
/// Longest explicit hash key: a decimal below 2^128 has at most 39 digits.
const MAX_HASH_KEY_DIGITS: usize = 39;
/// Fewest bytes one user record takes in an aggregate (its field tag and length, a one-byte partition
/// key index, an empty data field): the number of user records is bounded by the aggregate's size.
const MIN_USER_RECORD_BYTES: usize = 6;

/// One user record of an aggregate.
///
/// What an aggregate expands to is bounded by its size: at most one user record per
/// `MIN_USER_RECORD_BYTES` bytes of it, each a fixed-size value that shares its partition key with
/// every other record using the same key-table entry and slices its data out of the aggregate's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// Its partition key (shared with the aggregate's key table).
    pub partition_key: Arc<str>,
    /// Its explicit hash key, if the producer set one.
    pub explicit_hash_key: Option<u128>,
    /// Its data (a slice of the aggregate's bytes, no copy).
    pub data: Bytes,
}

impl UserRecord {
    /// The 128-bit hash key that places the record on a shard.
    pub fn hash_key(&self) -> u128 {
        self.explicit_hash_key
            .unwrap_or_else(|| partition_key_hash(&self.partition_key))
    }
}

/// The hash key Kinesis derives from a partition key: its MD5 as a big-endian 128-bit integer.
pub fn partition_key_hash(key: &str) -> u128 {
    u128::from_be_bytes(md5::compute(key.as_bytes()).0)
}

/// Why an aggregate could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAggregate {
    /// No magic, or too short: a plain record.
    Plain,
    /// The MD5 trailer does not match: treated as a plain record.
    BadChecksum,
    /// The protobuf does not parse, or breaks a Kinesis limit (a partition key over 256 characters,
    /// an explicit hash key that is not a decimal below 2^128): treated as a plain record.
    Malformed(String),
}

/// De-aggregates `data`; `Err` says why it is to be treated as a plain record.
pub fn deaggregate(data: &Bytes) -> Result<Vec<UserRecord>, NotAggregate> {
    if data.len() < KPL_MAGIC.len() + MD5_LEN || data[..4] != KPL_MAGIC {
        return Err(NotAggregate::Plain);
    }
    let body_end = data.len() - MD5_LEN;
    let body = data.slice(4..body_end);
    if md5::compute(&body).0 != data[body_end..] {
        return Err(NotAggregate::BadChecksum);
    }
    parse_aggregate(&body).map_err(NotAggregate::Malformed)
}

/// A reader of protobuf wire format over a byte slice.
struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    /// A length-delimited field's bounds.
    fn bytes(&mut self) -> Result<(usize, usize), String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
        let start = self.pos;
        let end = start
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or("truncated field")?;
        self.pos = end;
        Ok((start, end))
    }

    fn skip(&mut self, wire_type: u64) -> Result<(), String> {
        match wire_type {
            0 => self.varint().map(|_| ()),
            1 => self.advance(8),
            2 => self.bytes().map(|_| ()),
            5 => self.advance(4),
            t => Err(format!("unsupported wire type {t}")),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), String> {
        if self.pos + n > self.buf.len() {
            return Err("truncated field".into());
        }
        self.pos += n;
        Ok(())
    }
}

fn partition_key(buf: &[u8], (s, e): (usize, usize)) -> Result<Arc<str>, String> {
    let text = std::str::from_utf8(&buf[s..e]).map_err(|_| "partition key is not UTF-8")?;
    // Cheap first: more bytes than 4 per character allows cannot be 256 characters.
    if text.len() > 4 * MAX_PARTITION_KEY_CHARS || text.chars().count() > MAX_PARTITION_KEY_CHARS {
        return Err(format!(
            "a partition key of {} bytes, over Kinesis's {MAX_PARTITION_KEY_CHARS} characters",
            text.len()
        ));
    }
    Ok(Arc::from(text))
}

fn hash_key(buf: &[u8], (s, e): (usize, usize)) -> Result<u128, String> {
    let digits = &buf[s..e];
    if digits.is_empty()
        || digits.len() > MAX_HASH_KEY_DIGITS
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return Err("an explicit hash key that is not a decimal below 2^128".into());
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<u128>().ok())
        .ok_or_else(|| "an explicit hash key that is not a decimal below 2^128".into())
}

fn parse_aggregate(body: &Bytes) -> Result<Vec<UserRecord>, String> {
    let mut keys: Vec<Arc<str>> = Vec::new();
    let mut hash_keys: Vec<u128> = Vec::new();
    // (partition key index, explicit hash key index, data bounds)
    let mut raw_records: Vec<(u64, Option<u64>, (usize, usize))> = Vec::new();
    let mut w = Wire::new(body);
    while !w.done() {
        let key = w.varint()?;
        match (key >> 3, key & 7) {
            (1, 2) => keys.push(partition_key(body, w.bytes()?)?),
            (2, 2) => hash_keys.push(hash_key(body, w.bytes()?)?),
            (3, 2) => {
                let (s, e) = w.bytes()?;
                let mut r = Wire::new(&body[s..e]);
                let (mut pk, mut ehk, mut data) = (None, None, None);
                while !r.done() {
                    let k = r.varint()?;
                    match (k >> 3, k & 7) {
                        (1, 0) => pk = Some(r.varint()?),
                        (2, 0) => ehk = Some(r.varint()?),
                        (3, 2) => {
                            let (ds, de) = r.bytes()?;
                            data = Some((s + ds, s + de));
                        }
                        (_, t) => r.skip(t)?,
                    }
                }
                raw_records.push((
                    pk.ok_or("record without partition_key_index")?,
                    ehk,
                    data.ok_or("record without data")?,
                ));
            }
            (_, t) => w.skip(t)?,
        }
    }
    debug_assert!(raw_records.len() <= body.len() / MIN_USER_RECORD_BYTES + 1);
    raw_records
        .into_iter()
        .map(|(pk, ehk, (s, e))| {
            let partition_key = keys
                .get(pk as usize)
                .cloned()
                .ok_or_else(|| format!("partition_key_index {pk} out of range"))?;
            let explicit_hash_key = match ehk {
                Some(i) => Some(
                    *hash_keys
                        .get(i as usize)
                        .ok_or_else(|| format!("explicit_hash_key_index {i} out of range"))?,
                ),
                None => None,
            };
            Ok(UserRecord {
                partition_key,
                explicit_hash_key,
                data: body.slice(s..e),
            })
        })
        .collect()
}

/// Encodes user records as a KPL aggregate (for tests and tools; the KPL itself is the producer).
pub fn aggregate(records: &[UserRecord]) -> Bytes {
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
    let mut keys: Vec<&str> = Vec::new();
    let mut hash_keys: Vec<String> = Vec::new();
    let mut body = Vec::new();
    let mut recs = Vec::new();
    for r in records {
        let pk = keys
            .iter()
            .position(|k| **k == *r.partition_key)
            .unwrap_or_else(|| {
                keys.push(&r.partition_key);
                keys.len() - 1
            });
        let mut rec = Vec::new();
        varint(1 << 3, &mut rec);
        varint(pk as u64, &mut rec);
        if let Some(h) = r.explicit_hash_key {
            let h = h.to_string();
            let hi = hash_keys.iter().position(|k| *k == h).unwrap_or_else(|| {
                hash_keys.push(h);
                hash_keys.len() - 1
            });
            varint(2 << 3, &mut rec);
            varint(hi as u64, &mut rec);
        }
        field(3, &r.data, &mut rec);
        recs.push(rec);
    }
    for k in &keys {
        field(1, k.as_bytes(), &mut body);
    }
    for h in &hash_keys {
        field(2, h.as_bytes(), &mut body);
    }
    for r in &recs {
        field(3, r, &mut body);
    }
    let mut out = KPL_MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&md5::compute(&body).0);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(pk: &str, ehk: Option<u128>, data: &str) -> UserRecord {
        UserRecord {
            partition_key: pk.into(),
            explicit_hash_key: ehk,
            data: Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    /// An aggregate body framed with magic and checksum.
    fn framed(body: &[u8]) -> Bytes {
        let mut out = KPL_MAGIC.to_vec();
        out.extend_from_slice(body);
        out.extend_from_slice(&md5::compute(body).0);
        Bytes::from(out)
    }

    /// A length-delimited protobuf field.
    fn field(num: u64, bytes: &[u8], out: &mut Vec<u8>) {
        for mut n in [(num << 3) | 2, bytes.len() as u64] {
            while n >= 0x80 {
                out.push((n as u8) | 0x80);
                n >>= 7;
            }
            out.push(n as u8);
        }
        out.extend_from_slice(bytes);
    }

    #[test]
    fn keys_and_hash_keys_outside_kinesis_limits_make_the_aggregate_malformed() {
        // The record of the issue: one 64 KiB partition key shared by many empty user records.
        let mut body = Vec::new();
        field(1, &vec![b'k'; 64 * 1024], &mut body);
        for _ in 0..1000 {
            field(3, &[0x08, 0x00, 0x1a, 0x00], &mut body);
        }
        assert!(
            matches!(deaggregate(&framed(&body)), Err(NotAggregate::Malformed(m)) if m.contains("partition key"))
        );
        // 256 characters (of up to 4 bytes each) is fine.
        let mut body = Vec::new();
        field(1, "é".repeat(256).as_bytes(), &mut body);
        field(3, &[0x08, 0x00, 0x1a, 0x00], &mut body);
        assert_eq!(deaggregate(&framed(&body)).unwrap().len(), 1);
        for bad in ["340282366920938463463374607431768211456", "-1", "1e3", ""] {
            let mut body = Vec::new();
            field(1, b"k", &mut body);
            field(2, bad.as_bytes(), &mut body);
            field(3, &[0x08, 0x00, 0x10, 0x00, 0x1a, 0x00], &mut body);
            assert!(
                matches!(deaggregate(&framed(&body)), Err(NotAggregate::Malformed(_))),
                "{bad:?} accepted"
            );
        }
        let mut body = Vec::new();
        field(1, b"k", &mut body);
        field(2, b"340282366920938463463374607431768211455", &mut body);
        field(3, &[0x08, 0x00, 0x10, 0x00, 0x1a, 0x00], &mut body);
        assert_eq!(
            deaggregate(&framed(&body)).unwrap()[0].hash_key(),
            u128::MAX
        );
    }

    #[test]
    fn user_records_share_their_key_table_entry() {
        let records: Vec<UserRecord> = (0..100).map(|_| user("shared-key", None, "")).collect();
        let back = deaggregate(&aggregate(&records)).unwrap();
        assert_eq!(back.len(), 100);
        assert!(
            back.windows(2)
                .all(|w| Arc::ptr_eq(&w[0].partition_key, &w[1].partition_key))
        );
    }

    #[test]
    fn round_trip_and_shared_key_tables() {
        let records = vec![
            user("a", None, "one"),
            user("b", Some(42), "two"),
            user("a", None, ""),
        ];
        let agg = aggregate(&records);
        assert_eq!(&agg[..4], &KPL_MAGIC);
        assert_eq!(deaggregate(&agg).unwrap(), records);
        assert_eq!(records[1].hash_key(), 42);
        assert_eq!(
            records[0].hash_key(),
            u128::from_be_bytes(md5::compute(b"a").0)
        );
    }

    #[test]
    fn plain_and_corrupt_records_are_not_aggregates() {
        assert_eq!(
            deaggregate(&Bytes::from_static(b"{\"json\":true}")),
            Err(NotAggregate::Plain)
        );
        let mut agg = aggregate(&[user("a", None, "x")]).to_vec();
        let last = agg.len() - 1;
        agg[last] ^= 1;
        assert_eq!(
            deaggregate(&Bytes::from(agg)),
            Err(NotAggregate::BadChecksum)
        );
        // Valid checksum over garbage protobuf.
        let body = vec![0x1a, 0x05, 0x08];
        let mut bad = KPL_MAGIC.to_vec();
        bad.extend_from_slice(&body);
        bad.extend_from_slice(&md5::compute(&body).0);
        assert!(matches!(
            deaggregate(&Bytes::from(bad)),
            Err(NotAggregate::Malformed(_))
        ));
    }
}
