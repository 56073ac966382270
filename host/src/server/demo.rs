//! `ratecard serve --demo`: the example plans, customers in several timezones subscribed to
//! them, and a month of their events so far, written into an empty store through the same
//! calls the API makes; then the example plugins (`examples/demo/`: committed components of
//! `examples/plugins/`), uploaded and activated, and a customer on a plan that uses them.
//! Deterministic: the same day gives the same data.

use ratecard_engine::plan::{Aggregation, Plan, PriceModel};
use ratecard_engine::usage::{CustomerSetup, Subscription};
use serde_json::{Value, json};

use super::{CustomerRecord, Server, ServerError};

/// The demo customers: id, timezone, and the index of the plan they are on.
const CUSTOMERS: [(&str, &str, usize); 6] = [
    ("acme", "UTC", 0),
    ("globex", "America/New_York", 0),
    ("initech", "Europe/Paris", 1),
    ("umbrella", "Asia/Tokyo", 1),
    ("hooli", "Australia/Sydney", 2),
    ("stark", "America/Los_Angeles", 2),
];

/// What the demo wrote.
#[derive(Debug)]
pub struct Seeded {
    pub n_plans: usize,
    pub n_customers: usize,
    pub n_events: usize,
}

/// Seeds `server` with `plans` (those using plugins are skipped: the demo loads none), the demo
/// customers and their events from the start of the current month (UTC) until now.
pub async fn seed(server: &Server, plans: Vec<Plan>) -> Result<Seeded, ServerError> {
    let plans: Vec<Plan> = plans
        .into_iter()
        .filter(|p| {
            !p.charges
                .iter()
                .any(|c| matches!(c.model, PriceModel::Custom { .. }))
                && !p
                    .metrics
                    .iter()
                    .any(|m| matches!(m.aggregation, Aggregation::Custom { .. }))
        })
        .collect();
    if plans.is_empty() {
        return Err(ServerError::Invalid("no example plan to seed".to_owned()));
    }
    let mut refs = Vec::new();
    for plan in &plans {
        refs.push(server.add_plan(plan.clone()).await?);
    }
    let now = server.now();
    let day = 86_400_000;
    let month_start = month_start_utc(now);
    // Subscribed since the first of the previous month, so the current period is a whole
    // month in every timezone.
    let start = format!("{}-01", &utc_date(month_start - day)[..7]);
    let mut batch = Vec::new();
    for (customer_idx, (id, timezone, plan_idx)) in CUSTOMERS.iter().enumerate() {
        let plan_idx = plan_idx % refs.len();
        server
            .put_customer(CustomerRecord {
                id: (*id).to_owned(),
                setup: CustomerSetup {
                    timezone: Some((*timezone).to_owned()),
                    subscription: Some(Subscription {
                        start: start.clone(),
                        billing_anchor: None,
                        end: None,
                    }),
                    ..CustomerSetup::default()
                },
                plan: Some(refs[plan_idx].clone()),
            })
            .await?;
        let plan = &plans[plan_idx];
        // One event per metric every few hours, sized by the customer.
        // From the second day (UTC): inside the current month in every timezone.
        let mut t = month_start + day + 3_600_000;
        let mut n = 0u64;
        // One event per event code (with every property its metrics read) every few hours.
        let mut codes: Vec<(&str, Vec<String>)> = Vec::new();
        let mut dimensions: Vec<(String, Vec<String>)> = Vec::new();
        for metric in &plan.metrics {
            let property = property_of(&metric.aggregation);
            match codes
                .iter_mut()
                .find(|(code, _)| *code == metric.event_code())
            {
                Some((_, properties)) => properties.extend(property),
                None => codes.push((metric.event_code(), property.into_iter().collect())),
            }
            for dim in &metric.group_by {
                dimensions.push((dim.clone(), dimension_values(plan, dim)));
            }
        }
        while t < now {
            for (code_idx, (code, properties)) in codes.iter().enumerate() {
                n += 1;
                let mut event = json!({
                    "id": format!("demo-{id}-{n}"),
                    "customer": id,
                    "timestamp": t / 1000,
                    "code": code,
                });
                if !properties.is_empty() {
                    let values: serde_json::Map<String, Value> = properties
                        .iter()
                        .enumerate()
                        .map(|(k, p)| {
                            let value =
                                1 + (n * 7 + customer_idx as u64 * 13 + (code_idx + k) as u64) % 40;
                            (p.clone(), json!(value))
                        })
                        .collect();
                    event["properties"] = Value::Object(values);
                }
                for (dim, values) in &dimensions {
                    let value = &values[(n as usize + customer_idx) % values.len()];
                    event["properties"][dim.as_str()] = json!(value);
                }
                batch.push(event);
            }
            t += (3 + customer_idx as i64) * 3_600_000;
        }
    }
    let n_events = ingest_all(server, &batch).await?;
    Ok(Seeded {
        n_plans: refs.len(),
        n_customers: CUSTOMERS.len(),
        n_events,
    })
}

/// The demo's plugins: components uploaded, checked and activated as an operator would
/// (`POST /v1/plugins`, then activate), and a plan naming them.
#[derive(Debug)]
pub struct DemoPlugins {
    pub components: Vec<Vec<u8>>,
    pub plan: Plan,
}

/// The config `plan` gives the plugin `reference` (the first metric or charge naming it), for
/// its dry run at upload.
#[cfg(feature = "plugins")]
fn config_in_plan(plan: &Plan, reference: &str) -> Option<Value> {
    let metrics = plan.metrics.iter().filter_map(|m| match &m.aggregation {
        Aggregation::Custom { plugin, config } => Some((plugin, config)),
        _ => None,
    });
    let charges = plan.charges.iter().filter_map(|c| match &c.model {
        PriceModel::Custom { plugin, config } => Some((plugin, config)),
        _ => None,
    });
    metrics
        .chain(charges)
        .find(|(plugin, _)| *plugin == reference)
        .map(|(_, config)| config.clone())
}

/// The customer on the plugins' plan: id and timezone.
pub const PLUGIN_CUSTOMER: (&str, &str) = ("wayne", "Europe/Amsterdam");

/// Seeds the plugins part of the demo into a server seeded by [`seed`]: uploads and activates
/// each component, adds the plan and subscribes [`PLUGIN_CUSTOMER`] to it with an hourly
/// transit sample (Mbps, for the 95th percentile) and power reading (kWh by time of use) from
/// the second day of this month until now. Returns the plugins' references.
#[cfg(feature = "plugins")]
pub async fn seed_plugins(
    server: &Server,
    demo: DemoPlugins,
) -> Result<(Vec<String>, usize), ServerError> {
    let mut references = Vec::new();
    for component in &demo.components {
        let reference = server.plugin_reference(component)?;
        let config = config_in_plan(&demo.plan, &reference);
        let check = server.upload_plugin(component, config).await?;
        server
            .activate_plugin(&check.reference, &check.sha256)
            .await?;
        references.push(check.reference);
    }
    let plan = server.add_plan(demo.plan).await?;
    let now = server.now();
    let day = 86_400_000;
    let month_start = month_start_utc(now);
    let (id, timezone) = PLUGIN_CUSTOMER;
    server
        .put_customer(CustomerRecord {
            id: id.to_owned(),
            setup: CustomerSetup {
                timezone: Some(timezone.to_owned()),
                subscription: Some(Subscription {
                    start: format!("{}-01", &utc_date(month_start - day)[..7]),
                    billing_anchor: None,
                    end: None,
                }),
                ..CustomerSetup::default()
            },
            plan: Some(plan),
        })
        .await?;
    let hour = 3_600_000;
    let mut batch = Vec::new();
    let mut t = month_start + day + hour;
    while t < now {
        let h = (t / hour) % 24;
        // Busier in the (UTC) working day, with a burst every few days the 95th percentile
        // drops.
        let busy = (7..19).contains(&h);
        let n = t / hour;
        let mbps = if n % 61 == 0 {
            900
        } else if busy {
            140 + (n * 37) % 60
        } else {
            60 + (n * 17) % 30
        };
        batch.push(
            json!({"id": format!("demo-{id}-bw-{n}"), "customer": id, "timestamp": t / 1000,
            "code": "port.sample", "properties": {"mbps": mbps}}),
        );
        let kwh = if busy { 4 + n % 3 } else { 2 + n % 2 };
        batch.push(json!({"id": format!("demo-{id}-kwh-{n}"), "customer": id, "timestamp": t / 1000,
            "code": "meter.reading", "properties": {"kwh": kwh, "tou": if busy { "peak" } else { "off-peak" }}}));
        t += hour;
    }
    let n_events = ingest_all(server, &batch).await?;
    Ok((references, n_events))
}

/// Ingests the demo's events in batches of 5,000: how many were stored; any refused one is an
/// error naming it (the demo's events are all good).
async fn ingest_all(server: &Server, batch: &[Value]) -> Result<usize, ServerError> {
    let mut n_events = 0;
    for chunk in batch.chunks(5_000) {
        for outcome in server.ingest(chunk.to_vec()).await? {
            match outcome {
                super::EventOutcome::Rejected { id, error, .. } => {
                    return Err(ServerError::Invalid(format!(
                        "demo event {}: {error}",
                        id.unwrap_or_default()
                    )));
                }
                _ => n_events += 1,
            }
        }
    }
    Ok(n_events)
}

/// The values a group-by dimension takes: those a matrix price lists for it, else two names.
fn dimension_values(plan: &Plan, dim: &str) -> Vec<String> {
    let mut values: Vec<String> = plan
        .charges
        .iter()
        .filter_map(|c| match &c.model {
            PriceModel::Matrix {
                dimensions, prices, ..
            } => {
                let idx = dimensions.iter().position(|d| d == dim)?;
                Some(
                    prices
                        .iter()
                        .filter_map(move |p| p.values.get(idx).cloned()),
                )
            }
            _ => None,
        })
        .flatten()
        .collect();
    values.sort();
    values.dedup();
    if values.is_empty() {
        values = vec!["standard".to_owned(), "premium".to_owned()];
    }
    values
}

/// The property a metric's aggregation reads, if any.
fn property_of(aggregation: &Aggregation) -> Option<String> {
    serde_json::to_value(aggregation)
        .ok()
        .and_then(|v| v.get("property").and_then(Value::as_str).map(str::to_owned))
}

/// Midnight UTC of the first day of the month holding `millis`.
fn month_start_utc(millis: i64) -> i64 {
    let date = utc_date(millis);
    let first = format!("{}-01T00:00:00Z", &date[..7]);
    ratecard_engine::usage::Timestamp::parse_rfc3339(&first).map_or(millis, |t| t.0)
}

/// `YYYY-MM-DD` (UTC) of an instant.
fn utc_date(millis: i64) -> String {
    let text = ratecard_engine::usage::Timestamp(millis).to_rfc3339();
    text.get(..10).unwrap_or(&text).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(utc_date(0), "1970-01-01");
        let t = ratecard_engine::usage::Timestamp::parse_rfc3339("2028-02-29T23:59:59Z")
            .unwrap()
            .0;
        assert_eq!(utc_date(t), "2028-02-29");
        assert_eq!(utc_date(month_start_utc(t)), "2028-02-01");
    }
}
