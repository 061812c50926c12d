//! The built-in sample generator of `streams put --sample N`: JSON click-stream events of about 250
//! bytes, deterministic for a seed, with a unique `id` per record.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const EVENT_TYPES: [&str; 4] = ["click", "view", "purchase", "scroll"];
const BASE_MILLIS: i64 = 1_795_000_000_000; // 2026-11-18

/// Generates sample events; see the module documentation.
pub struct SampleGenerator {
    rng: StdRng,
    next: u64,
    users: u32,
}

impl SampleGenerator {
    /// Events `start..` from `seed`, spread over `users` users (the partition keys).
    pub fn new(seed: u64, start: u64, users: u32) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed ^ start.rotate_left(17)),
            next: start,
            users: users.max(1),
        }
    }

    /// The next event's JSON text and its user (the natural partition key).
    pub fn next_event(&mut self) -> (String, String) {
        let id = self.next;
        self.next += 1;
        let user = format!("user-{:04}", self.rng.random_range(0..self.users));
        let event_type = EVENT_TYPES[self.rng.random_range(0..EVENT_TYPES.len())];
        let ts = chrono::DateTime::from_timestamp_millis(BASE_MILLIS + id as i64 * 37)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default();
        let amount = if event_type == "purchase" {
            format!("{:.2}", self.rng.random_range(1.0..500.0))
        } else {
            "0".to_owned()
        };
        let session: u64 = self.rng.random();
        let text = format!(
            concat!(
                r#"{{"id":{id},"user":"{user}","event_type":"{event_type}","page":"/products/{page:04}","#,
                r#""ts":"{ts}","amount":{amount},"session":"{session:016x}","#,
                r#""agent":"Mozilla/5.0 (X11; Linux x86_64) kinesis-connectors sample generator","seq":{id}}}"#
            ),
            id = id,
            user = user,
            event_type = event_type,
            page = self.rng.random_range(0..5000),
            ts = ts,
            amount = amount,
            session = session,
        );
        (text, user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_json_of_about_250_bytes_with_unique_ids() {
        let mut g = SampleGenerator::new(7, 0, 50);
        let mut ids = std::collections::HashSet::new();
        for _ in 0..1000 {
            let (text, user) = g.next_event();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(ids.insert(v["id"].as_u64().unwrap()));
            assert_eq!(v["user"], user.as_str());
            assert!((200..=300).contains(&text.len()), "{} bytes", text.len());
        }
        let again = SampleGenerator::new(7, 0, 50).next_event();
        assert_eq!(again, SampleGenerator::new(7, 0, 50).next_event());
    }
}
