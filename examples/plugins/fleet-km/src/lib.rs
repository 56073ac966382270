//! Fleet kilometres from odometer readings: for each vehicle, the highest reading minus the
//! lowest, summed over vehicles. Events carry `vehicle_id` and `odometer_km`.

use std::collections::BTreeMap;

use ratecard_plugin::{Decimal, Events, Metric, Reads, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

#[derive(Debug, Serialize, Deserialize)]
pub struct FleetKm {
    /// (lowest, highest) reading per vehicle.
    readings: BTreeMap<String, (Decimal, Decimal)>,
}

impl Metric for FleetKm {
    type Config = Option<Config>;

    fn new(_config: Option<Config>) -> Result<Self> {
        Ok(FleetKm {
            readings: BTreeMap::new(),
        })
    }

    fn reads(&self) -> Reads {
        Reads::timestamps()
            .property("vehicle_id")
            .property("odometer_km")
    }

    fn update(&mut self, events: &Events) -> Result<()> {
        for event in events {
            let vehicle = event.string("vehicle_id")?;
            let km = event.decimal("odometer_km")?;
            self.add(vehicle, km, km);
        }
        Ok(())
    }

    fn merge(&mut self, other: Self) -> Result<()> {
        for (vehicle, (low, high)) in other.readings {
            self.add(&vehicle, low, high);
        }
        Ok(())
    }

    fn finish(&self) -> Result<Decimal> {
        Ok(self.readings.values().map(|(low, high)| high - low).sum())
    }
}

impl FleetKm {
    fn add(&mut self, vehicle: &str, low: Decimal, high: Decimal) {
        match self.readings.get_mut(vehicle) {
            Some((l, h)) => {
                *l = (*l).min(low);
                *h = (*h).max(high);
            }
            None => {
                self.readings.insert(vehicle.to_owned(), (low, high));
            }
        }
    }
}

ratecard_plugin::export_metric!(FleetKm);

#[cfg(test)]
mod tests {
    use super::*;
    use ratecard_plugin::{Batch, Event, event, num, string};

    fn reading(id: &str, vehicle: &str, km: &str) -> Event<'static> {
        event(
            id,
            0,
            "odo",
            &[("vehicle_id", string(vehicle)), ("odometer_km", num(km))],
        )
    }

    #[test]
    fn distance_is_max_minus_min_per_vehicle() {
        let mut metric = FleetKm::new(None).unwrap();
        let events = [
            reading("1", "v1", "100"),
            reading("2", "v2", "50.5"),
            reading("3", "v1", "130"),
            reading("4", "v2", "60"),
        ];
        metric
            .update(&Batch::with_reads(&events, &metric.reads()).events())
            .unwrap();
        assert_eq!(metric.finish().unwrap(), "39.5".parse().unwrap());
    }

    #[test]
    fn one_reading_is_zero_km() {
        let mut metric = FleetKm::new(None).unwrap();
        metric
            .update(&Batch::with_reads(&[reading("1", "v1", "100")], &metric.reads()).events())
            .unwrap();
        assert_eq!(metric.finish().unwrap(), Decimal::ZERO);
    }
}
