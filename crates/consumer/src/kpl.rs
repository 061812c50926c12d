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

use bytes::Bytes;

/// The four bytes that open a KPL aggregated record.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const MD5_LEN: usize = 16;

/// One user record of an aggregate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// Its partition key.
    pub partition_key: String,
    /// Its explicit hash key (decimal), if the producer set one.
    pub explicit_hash_key: Option<String>,
    /// Its data (a slice of the aggregate's bytes, no copy).
    pub data: Bytes,
}

impl UserRecord {
    /// The 128-bit hash key that places the record on a shard.
    pub fn hash_key(&self) -> u128 {
        self.explicit_hash_key
            .as_deref()
            .and_then(|h| h.parse::<u128>().ok())
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
    /// The protobuf does not parse: treated as a plain record.
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

fn string(buf: &[u8], (s, e): (usize, usize)) -> Result<String, String> {
    String::from_utf8(buf[s..e].to_vec()).map_err(|_| "key is not UTF-8".to_string())
}

fn parse_aggregate(body: &Bytes) -> Result<Vec<UserRecord>, String> {
    let mut keys = Vec::new();
    let mut hash_keys = Vec::new();
    let mut raw_records: Vec<(u64, Option<u64>, (usize, usize))> = Vec::new();
    let mut w = Wire::new(body);
    while !w.done() {
        let key = w.varint()?;
        match (key >> 3, key & 7) {
            (1, 2) => keys.push(string(body, w.bytes()?)?),
            (2, 2) => hash_keys.push(string(body, w.bytes()?)?),
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
    raw_records
        .into_iter()
        .map(|(pk, ehk, (s, e))| {
            let partition_key = keys
                .get(pk as usize)
                .cloned()
                .ok_or_else(|| format!("partition_key_index {pk} out of range"))?;
            let explicit_hash_key = match ehk {
                Some(i) => Some(
                    hash_keys
                        .get(i as usize)
                        .cloned()
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
    let mut hash_keys: Vec<&str> = Vec::new();
    let mut body = Vec::new();
    let mut recs = Vec::new();
    for r in records {
        let pk = keys
            .iter()
            .position(|k| *k == r.partition_key)
            .unwrap_or_else(|| {
                keys.push(&r.partition_key);
                keys.len() - 1
            });
        let mut rec = Vec::new();
        varint(1 << 3, &mut rec);
        varint(pk as u64, &mut rec);
        if let Some(h) = &r.explicit_hash_key {
            let hi = hash_keys.iter().position(|k| k == h).unwrap_or_else(|| {
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

    fn user(pk: &str, ehk: Option<&str>, data: &str) -> UserRecord {
        UserRecord {
            partition_key: pk.into(),
            explicit_hash_key: ehk.map(str::to_owned),
            data: Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    #[test]
    fn round_trip_and_shared_key_tables() {
        let records = vec![
            user("a", None, "one"),
            user("b", Some("42"), "two"),
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
