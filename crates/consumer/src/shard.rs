//! Shards as the engine sees them, and the parent/child graph of resharding.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

/// One shard of a stream, from `ListShards`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShardInfo {
    /// The shard id.
    pub shard_id: String,
    /// The parent (split or merge source), if any.
    pub parent_shard_id: Option<String>,
    /// The second parent of a merged shard.
    pub adjacent_parent_shard_id: Option<String>,
    /// Lowest hash key (decimal) of the shard's range.
    pub starting_hash_key: String,
    /// Highest hash key (decimal) of the shard's range.
    pub ending_hash_key: String,
    /// First sequence number of the shard.
    pub starting_sequence_number: String,
    /// Last sequence number, once the shard is closed.
    pub ending_sequence_number: Option<String>,
}

impl ShardInfo {
    /// Whether the shard still takes writes (a "leaf" of the shard graph).
    pub fn is_open(&self) -> bool {
        self.ending_sequence_number.is_none()
    }

    /// The shard's parents.
    pub fn parents(&self) -> impl Iterator<Item = &str> {
        self.parent_shard_id
            .as_deref()
            .into_iter()
            .chain(self.adjacent_parent_shard_id.as_deref())
    }

    /// Size of the hash-key range, as a fraction of the whole key space (0..=1).
    pub fn hash_range_fraction(&self) -> f64 {
        let lo: f64 = self.starting_hash_key.parse().unwrap_or(0.0);
        let hi: f64 = self.ending_hash_key.parse().unwrap_or(0.0);
        (hi - lo + 1.0) / 2f64.powi(128)
    }
}

impl From<aws_sdk_kinesis::types::Shard> for ShardInfo {
    fn from(s: aws_sdk_kinesis::types::Shard) -> Self {
        let (starting_hash_key, ending_hash_key) = s
            .hash_key_range
            .map(|r| (r.starting_hash_key, r.ending_hash_key))
            .unwrap_or_default();
        let (starting_sequence_number, ending_sequence_number) = s
            .sequence_number_range
            .map(|r| (r.starting_sequence_number, r.ending_sequence_number))
            .unwrap_or_default();
        Self {
            shard_id: s.shard_id,
            parent_shard_id: s.parent_shard_id,
            adjacent_parent_shard_id: s.adjacent_parent_shard_id,
            starting_hash_key,
            ending_hash_key,
            starting_sequence_number,
            ending_sequence_number,
        }
    }
}

/// The open shards of a listing: the leaves of the shard graph, where new records go.
pub fn leaf_shards(shards: &[ShardInfo]) -> Vec<&ShardInfo> {
    shards.iter().filter(|s| s.is_open()).collect()
}

/// Shards ordered so that every parent comes before its children.
pub fn parents_first(shards: &[ShardInfo]) -> Vec<&ShardInfo> {
    let by_id: HashMap<&str, &ShardInfo> =
        shards.iter().map(|s| (s.shard_id.as_str(), s)).collect();
    let mut out = Vec::with_capacity(shards.len());
    let mut seen: HashSet<&str> = HashSet::new();
    fn visit<'a>(
        s: &'a ShardInfo,
        by_id: &HashMap<&str, &'a ShardInfo>,
        seen: &mut HashSet<&'a str>,
        out: &mut Vec<&'a ShardInfo>,
    ) {
        if !seen.insert(s.shard_id.as_str()) {
            return;
        }
        for p in s.parents() {
            if let Some(parent) = by_id.get(p) {
                visit(parent, by_id, seen, out);
            }
        }
        out.push(s);
    }
    let mut sorted: Vec<&ShardInfo> = shards.iter().collect();
    sorted.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
    for s in sorted {
        visit(s, &by_id, &mut seen, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str], open: bool) -> ShardInfo {
        ShardInfo {
            shard_id: id.into(),
            parent_shard_id: parents.first().map(|s| s.to_string()),
            adjacent_parent_shard_id: parents.get(1).map(|s| s.to_string()),
            starting_hash_key: "0".into(),
            ending_hash_key: "1".into(),
            starting_sequence_number: "1".into(),
            ending_sequence_number: (!open).then(|| "9".into()),
        }
    }

    #[test]
    fn parents_come_first_and_leaves_are_open_shards() {
        let shards = vec![
            shard("s3", &["s1", "s2"], true),
            shard("s2", &["s0"], false),
            shard("s1", &["s0"], false),
            shard("s0", &[], false),
            shard("s4", &["gone"], true),
        ];
        let order: Vec<_> = parents_first(&shards)
            .iter()
            .map(|s| s.shard_id.clone())
            .collect();
        assert_eq!(order, ["s0", "s1", "s2", "s3", "s4"]);
        let leaves: Vec<_> = leaf_shards(&shards)
            .iter()
            .map(|s| s.shard_id.clone())
            .collect();
        assert_eq!(leaves, ["s3", "s4"]);
    }
}
