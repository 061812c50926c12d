//! Per-shard progress of a bounded run (`replay --until-tip`): bars on a terminal, a summary otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kinesis_connectors_consumer::ConsumerMetrics;
use tokio::task::JoinHandle;

/// A running progress display.
pub struct Progress {
    metrics: Arc<ConsumerMetrics>,
    task: Option<JoinHandle<()>>,
}

fn describe(s: &kinesis_connectors_consumer::ShardProgress) -> String {
    let state = if s.ended {
        "ended".to_owned()
    } else if s.at_tip {
        "at tip".to_owned()
    } else {
        match s.iterator_age_ms(chrono::Utc::now()) {
            Some(age) => format!("{age} ms behind"),
            None => "reading".to_owned(),
        }
    };
    format!("{} records, {state}", s.records_read)
}

impl Progress {
    /// Starts showing bars when stderr is a terminal; otherwise only [`finish`](Self::finish) prints.
    pub fn start(metrics: Arc<ConsumerMetrics>) -> Self {
        let task = std::io::stderr().is_terminal().then(|| {
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let bars = MultiProgress::new();
                let style = ProgressStyle::with_template("{spinner} {prefix:<24} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                let mut shown: std::collections::BTreeMap<String, ProgressBar> = Default::default();
                loop {
                    for (shard, s) in metrics.shards() {
                        let bar = shown.entry(shard.clone()).or_insert_with(|| {
                            let b = bars.add(ProgressBar::new_spinner());
                            b.set_style(style.clone());
                            b.set_prefix(shard);
                            b
                        });
                        bar.set_message(describe(&s));
                        bar.tick();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        Self { metrics, task }
    }

    /// Stops the bars and prints the per-shard summary.
    pub fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
        }
        let shards = self.metrics.shards();
        let total: u64 = shards.values().map(|s| s.records_read).sum();
        eprintln!("{:<24} PROGRESS", "SHARD");
        for (shard, s) in &shards {
            eprintln!("{shard:<24} {}", describe(s));
        }
        eprintln!("{} records read from {} shards", total, shards.len());
    }
}
