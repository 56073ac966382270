//! 95th-percentile bandwidth, the burstable billing of transit providers.
//!
//! Events carry a rate (`mbps` by default). Samples are summed per 5-minute slot (so several
//! routers reporting the same slot add up); the quantity is the nearest-rank 95th percentile of
//! the slot totals: sort ascending, drop the top 5 %, take the highest remaining.

use std::collections::BTreeMap;
use std::ops::Range;

use ratecard_plugin::{Decimal, Events, Metric, Reads, Result};
use serde::{Deserialize, Serialize};

const SLOT_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_property")]
    pub property: String,
}

fn default_property() -> String {
    "mbps".to_owned()
}

#[derive(Debug, Serialize, Deserialize)]
pub struct P95 {
    property: String,
    /// Rate total per 5-minute slot (slot index = timestamp / 5 min).
    slots: BTreeMap<i64, Decimal>,
}

/// The times of `t`'s slot, `[start, start + 5 min)`, cut to what an `i64` holds (every
/// timestamp in the cut range is still in the slot).
fn slot_range(t: i64) -> Range<i64> {
    let into_slot = t.rem_euclid(SLOT_MS);
    t.saturating_sub(into_slot)..t.saturating_add(SLOT_MS - into_slot)
}

impl Metric for P95 {
    type Config = Config;
    const CONFIG_SCHEMA: &'static str = r#"{"type":"object","properties":{"property":{"type":"string","default":"mbps"}},"additionalProperties":false}"#;

    fn new(config: Config) -> Result<Self> {
        Ok(P95 {
            property: config.property,
            slots: BTreeMap::new(),
        })
    }

    /// The timestamp and the rate of each event, nothing else.
    fn reads(&self) -> Reads {
        Reads::timestamps().property(&self.property)
    }

    fn update(&mut self, events: &Events) -> Result<()> {
        let P95 { property, slots } = self;
        // Samples come in time order, so consecutive ones mostly share a slot: the map is
        // searched once per run of samples in one slot, not once per sample, and a sample
        // inside the run's time range needs no division to find its slot. The rates are read
        // for the whole batch first (`decimal_column`: a batch with a bad sample is refused
        // whole). The samples are still added one by one, the same `Decimal` additions in the
        // same order as without runs (so the same result, rounding included).
        let mut run: Option<(Range<i64>, &mut Decimal)> = None;
        for (t, rate) in events.timestamps_ms().zip(events.decimal_column(property)?) {
            match &mut run {
                Some((run_ms, total)) if run_ms.contains(&t) => **total += rate,
                _ => {
                    let total = slots.entry(t.div_euclid(SLOT_MS)).or_default();
                    *total += rate;
                    run = Some((slot_range(t), total));
                }
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: Self) -> Result<()> {
        for (slot, rate) in other.slots {
            *self.slots.entry(slot).or_default() += rate;
        }
        Ok(())
    }

    fn finish(&self) -> Result<Decimal> {
        let mut rates: Vec<Decimal> = self.slots.values().copied().collect();
        if rates.is_empty() {
            return Ok(Decimal::ZERO);
        }
        // Nearest rank: ceil(0.95 * n), 1-based; selected in linear time, not sorted.
        let rank = (rates.len() * 95).div_ceil(100);
        Ok(*rates.select_nth_unstable(rank - 1).1)
    }
}

ratecard_plugin::export_metric!(P95);

#[cfg(test)]
mod tests {
    use super::*;
    use ratecard_plugin::{Batch, Event, event, num};

    fn run(samples: &[(i64, &str)]) -> Decimal {
        let events: Vec<Event> = samples
            .iter()
            .enumerate()
            .map(|(i, (t, mbps))| event(&i.to_string(), *t, "bw", &[("mbps", num(mbps))]))
            .collect();
        let mut metric = P95::new(Config {
            property: "mbps".into(),
        })
        .unwrap();
        metric
            .update(&Batch::with_reads(&events, &metric.reads()).events())
            .unwrap();
        metric.finish().unwrap()
    }

    #[test]
    fn top_five_percent_is_dropped() {
        // 20 slots 1..=20: the 95th percentile drops slot 20 and keeps 19.
        let samples: Vec<(i64, String)> = (1..=20).map(|i| (i * SLOT_MS, i.to_string())).collect();
        let samples: Vec<(i64, &str)> = samples.iter().map(|(t, v)| (*t, v.as_str())).collect();
        assert_eq!(run(&samples), Decimal::from(19));
    }

    #[test]
    fn samples_in_one_slot_add_up() {
        assert_eq!(run(&[(0, "1.5"), (1000, "2.25")]), "3.75".parse().unwrap());
    }

    #[test]
    fn samples_out_of_order_add_up_and_a_bad_sample_refuses_its_batch() {
        let mut metric = P95::new(Config {
            property: "mbps".into(),
        })
        .unwrap();
        let events = [
            event("1", SLOT_MS, "bw", &[("mbps", num("2"))]),
            event("2", 0, "bw", &[("mbps", num("1"))]),
            event("3", SLOT_MS + 1, "bw", &[("mbps", num("3"))]),
        ];
        let batch = Batch::with_reads(&events, &metric.reads());
        metric.update(&batch.events()).unwrap();
        let slots = |metric: &P95| -> Vec<(i64, Decimal)> {
            metric.slots.iter().map(|(k, v)| (*k, *v)).collect()
        };
        assert_eq!(slots(&metric), [(0, Decimal::ONE), (1, Decimal::from(5))]);
        let bad = [
            event("4", 2, "bw", &[("mbps", num("10"))]),
            event("5", 1, "bw", &[]),
        ];
        let batch = Batch::with_reads(&bad, &metric.reads());
        assert_eq!(
            metric.update(&batch.events()).unwrap_err(),
            batch.events().get(1).unwrap().invalid("no property `mbps`")
        );
        assert_eq!(slots(&metric), [(0, Decimal::ONE), (1, Decimal::from(5))]);
    }

    #[test]
    fn a_slot_range_holds_exactly_its_slot() {
        for t in [0, 1, SLOT_MS - 1, SLOT_MS, -1, -SLOT_MS, 7 * SLOT_MS + 3] {
            let range = slot_range(t);
            assert_eq!(range.start.div_euclid(SLOT_MS), t.div_euclid(SLOT_MS));
            assert_eq!(range.end - range.start, SLOT_MS);
            assert_eq!(range.end.div_euclid(SLOT_MS), t.div_euclid(SLOT_MS) + 1);
        }
        // At the ends of `i64`, the range is cut but holds only timestamps of the slot.
        for t in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1] {
            let range = slot_range(t);
            assert!(range.contains(&t) || range.end == i64::MAX);
            for edge in [range.start, range.end - 1] {
                assert_eq!(edge.div_euclid(SLOT_MS), t.div_euclid(SLOT_MS));
            }
        }
    }

    #[test]
    fn no_samples_is_zero() {
        assert_eq!(run(&[]), Decimal::ZERO);
    }
}
