//! Peak concurrent sessions: the highest number of sessions open at the same instant.
//!
//! `session.start` events open a session, `session.end` events close one (codes configurable).
//! At equal timestamps ends count before starts, so back-to-back sessions do not overlap. The
//! count starts at zero and an end without a start never takes it below zero.

use ratecard_plugin::{Decimal, Events, Metric, PluginError, Reads, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_start")]
    pub start_code: String,
    #[serde(default = "default_end")]
    pub end_code: String,
}

fn default_start() -> String {
    "session.start".to_owned()
}

fn default_end() -> String {
    "session.end".to_owned()
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PeakSessions {
    start_code: String,
    end_code: String,
    /// (timestamp, +1 for a start / -1 for an end).
    changes: Vec<(i64, i8)>,
}

impl Metric for PeakSessions {
    type Config = Config;
    const CONFIG_SCHEMA: &'static str = r#"{"type":"object","properties":{"start_code":{"type":"string"},"end_code":{"type":"string"}},"additionalProperties":false}"#;

    fn new(config: Config) -> Result<Self> {
        if config.start_code == config.end_code {
            return Err(PluginError::InvalidConfig(
                "start_code and end_code must differ".into(),
            ));
        }
        Ok(PeakSessions {
            start_code: config.start_code,
            end_code: config.end_code,
            changes: Vec::new(),
        })
    }

    /// The code and timestamp of each event, nothing else.
    fn reads(&self) -> Reads {
        Reads::timestamps().codes()
    }

    fn update(&mut self, events: &Events) -> Result<()> {
        for event in events {
            if event.code() == self.start_code {
                self.changes.push((event.timestamp_ms(), 1));
            } else if event.code() == self.end_code {
                self.changes.push((event.timestamp_ms(), -1));
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: Self) -> Result<()> {
        self.changes.extend(other.changes);
        Ok(())
    }

    fn finish(&self) -> Result<Decimal> {
        let mut changes = self.changes.clone();
        // Ends (-1) sort before starts (+1) at the same instant.
        changes.sort_unstable();
        let (mut open, mut peak) = (0i64, 0i64);
        for (_, change) in changes {
            open = (open + i64::from(change)).max(0);
            peak = peak.max(open);
        }
        Ok(Decimal::from(peak))
    }
}

ratecard_plugin::export_metric!(PeakSessions);

#[cfg(test)]
mod tests {
    use super::*;
    use ratecard_plugin::{Batch, Event, event};

    fn peak(changes: &[(i64, &str)]) -> Decimal {
        let events: Vec<Event> = changes
            .iter()
            .enumerate()
            .map(|(i, (t, code))| event(&i.to_string(), *t, code, &[]))
            .collect();
        let mut metric = PeakSessions::new(Config {
            start_code: default_start(),
            end_code: default_end(),
        })
        .unwrap();
        metric
            .update(&Batch::with_reads(&events, &metric.reads()).events())
            .unwrap();
        metric.finish().unwrap()
    }

    #[test]
    fn overlapping_sessions_count_together() {
        let s = "session.start";
        let e = "session.end";
        assert_eq!(
            peak(&[(0, s), (5, s), (7, s), (8, e), (9, e), (10, e)]),
            Decimal::from(3)
        );
    }

    #[test]
    fn back_to_back_sessions_do_not_overlap() {
        assert_eq!(
            peak(&[
                (0, "session.start"),
                (5, "session.end"),
                (5, "session.start")
            ]),
            Decimal::ONE
        );
    }

    #[test]
    fn ends_without_starts_do_not_go_negative() {
        assert_eq!(
            peak(&[(0, "session.end"), (1, "session.end"), (2, "session.start")]),
            Decimal::ONE
        );
    }

    #[test]
    fn same_codes_are_rejected() {
        let config = Config {
            start_code: "x".into(),
            end_code: "x".into(),
        };
        assert!(matches!(
            PeakSessions::new(config),
            Err(PluginError::InvalidConfig(_))
        ));
    }
}
