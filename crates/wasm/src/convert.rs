//! The binding's conversions that do not touch JavaScript values: JSON text and decimal strings in,
//! JSON text and decimal strings out, engine errors to [`Failure`]. Compiled and tested natively
//! too; `lib.rs` only moves values across the JS boundary.

use std::collections::BTreeMap;

use ratecard_engine::Decimal;
use ratecard_engine::decimal::parse_decimal;
use ratecard_engine::error::ErrorReport;
use ratecard_engine::estimate::{self, EstimateError};
use ratecard_engine::json::ParseError;
use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::rate::{PreparedPlan, RateError};
use ratecard_engine::usage::Usage;
use ratecard_engine::validate::{Issue, Severity, validate_plan};
use serde::Serialize;

/// An error on its way to JavaScript: a message, a stable code, the JSON path it is about (if
/// one) and, for a document, plan or rating error, the engine's `ErrorReport` (its JSON: code,
/// document, path, every issue with its path, message), exactly as the native engine reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// The report's code (`invalid_json`, `invalid_plan`, `invalid_usage`, `period`, `charge`,
    /// …) or the estimate's (`unknown_metric`, `grouped_metric`, `bad_range`) or
    /// `invalid_argument` for a call made wrong.
    pub code: String,
    pub path: Option<String>,
    /// `ErrorReport` JSON, for errors the engine reports.
    pub report: Option<String>,
}

impl Failure {
    /// A call made with a wrong argument (not a document problem).
    pub fn argument(message: String) -> Failure {
        Failure::at("invalid_argument", None, message)
    }

    fn at(code: &str, path: Option<String>, message: String) -> Failure {
        Failure {
            message,
            code: code.to_owned(),
            path,
            report: None,
        }
    }

    fn report(report: ErrorReport) -> Failure {
        Failure {
            message: report.message.clone(),
            code: report.code.as_str().to_owned(),
            path: report.path.clone(),
            report: serde_json::to_string(&report).ok(),
        }
    }

    /// Every parse error of a document named `what` (`plan`, `usage`).
    fn json(what: &str, errors: Vec<ParseError>) -> Failure {
        Failure::report(ErrorReport::invalid_json(what, &errors))
    }

    /// A rating error of `plan`; a charge's error points at that charge.
    fn rate(error: RateError, plan: &Plan) -> Failure {
        Failure::report(ErrorReport::from(&error).in_plan(plan, &error))
    }

    fn estimate(error: EstimateError, plan: &Plan) -> Failure {
        match error {
            EstimateError::Rate(error) => Failure::rate(error, plan),
            EstimateError::UnknownMetric { .. } => {
                Failure::at("unknown_metric", None, error.to_string())
            }
            EstimateError::GroupedMetric(ref metric) => {
                let path = plan
                    .metrics
                    .iter()
                    .position(|m| &m.code == metric)
                    .map(|idx| format!("$.metrics[{idx}]"));
                Failure::at("grouped_metric", path, error.to_string())
            }
            EstimateError::BadRange(_) => Failure::at("bad_range", None, error.to_string()),
            _ => Failure::at("estimate", None, error.to_string()),
        }
    }
}

/// One problem of a document or plan, as JavaScript sees it (`{path, code, message}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: String,
    pub code: String,
    pub path: String,
    pub message: String,
}

impl Problem {
    /// The engine's issue as it serializes (its code as the stable snake-case text), read off
    /// its fields rather than through a `serde_json::Value` of it (a serializer less).
    pub fn of(issue: &Issue) -> Problem {
        let severity = match issue.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        Problem {
            severity: severity.to_owned(),
            code: issue.code.as_str().to_owned(),
            path: issue.path.clone(),
            message: issue.message.clone(),
        }
    }

    /// A parse error as a validation finding (`invalid_json`), as `ratecard validate` reports it.
    fn of_json(error: ParseError) -> Problem {
        Problem {
            severity: "error".to_owned(),
            code: "invalid_json".to_owned(),
            message: match (error.line, error.column) {
                (Some(line), Some(column)) => {
                    format!("{} (line {line}, column {column})", error.message)
                }
                _ => error.message,
            },
            path: error.path,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The engine's JSON of a value (compact).
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, Failure> {
    // An invoice of ten graduated charges is ~9 KB: one allocation instead of a dozen copies.
    let mut bytes = Vec::with_capacity(16 * 1024);
    serde_json::to_writer(&mut bytes, value)
        .map_err(|error| Failure::argument(format!("serializing the result: {error}")))?;
    String::from_utf8(bytes)
        .map_err(|error| Failure::argument(format!("serializing the result: {error}")))
}

/// Documents are read with paths tracked from the start (`json::parse_tracking`, the same
/// result as `parse`), so the package holds one deserializer per document type, not two: a
/// plan is read once per prepared plan.
pub fn parse_plan(text: &str) -> Result<Plan, Failure> {
    ratecard_engine::json::parse_tracking(text).map_err(|errors| Failure::json("plan", errors))
}

/// Usage too: `parse`'s untracked first read would add a second usage deserializer (~20 KB
/// gzipped) for ~1 % of a quote.
pub fn parse_usage(text: &str) -> Result<Usage, Failure> {
    ratecard_engine::json::parse_tracking(text).map_err(|errors| Failure::json("usage", errors))
}

/// Parses and validates a plan once.
pub fn prepare(plan: &str) -> Result<PreparedPlan<'static>, Failure> {
    let plan = parse_plan(plan)?;
    // Kept for error paths: `new` takes the plan by value.
    let charges_and_metrics = plan.clone();
    PreparedPlan::new(plan).map_err(|error| Failure::rate(error, &charges_and_metrics))
}

/// How a result leaves: the engine's JSON, byte for byte, or the same JSON with every
/// non-ASCII character written as a `\uXXXX` escape: the text `JSON.parse` turns into the same
/// object, but one that the browser decodes from memory ~10× faster (measured in Node 20:
/// 3 µs against 28 µs for a 9 KB invoice holding 60 `×` and `∞`) and parses as a one-byte string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Json {
    Exact,
    Ascii,
}

/// JSON text with every non-ASCII character escaped (see [`Json::Ascii`]). Outside strings JSON
/// is ASCII, so each such character is inside a string, where `\uXXXX` means it.
fn ascii(json: String) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if json.is_ascii() {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 256);
    let mut rest = json.as_str();
    while let Some(at) = rest.bytes().position(|b| !b.is_ascii()) {
        out.push_str(&rest[..at]);
        let c = rest[at..].chars().next().unwrap_or_default();
        for unit in c.encode_utf16(&mut [0; 2]) {
            out.push_str("\\u");
            for shift in [12, 8, 4, 0] {
                out.push(char::from(HEX[usize::from((*unit >> shift) & 0xf)]));
            }
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// `value` as JSON text of the kind asked for.
pub fn to_json_as<T: Serialize + ?Sized>(value: &T, json: Json) -> Result<String, Failure> {
    let text = to_json(value)?;
    Ok(match json {
        Json::Exact => text,
        Json::Ascii => ascii(text),
    })
}

/// The invoice JSON of `plan` and `usage` texts.
pub fn quote(plan: &str, usage: &str) -> Result<String, Failure> {
    quote_as(plan, usage, Json::Exact)
}

pub fn quote_as(plan: &str, usage: &str, json: Json) -> Result<String, Failure> {
    let plan = parse_plan(plan)?;
    let usage = parse_usage(usage)?;
    let invoice = ratecard_engine::rate::quote(&plan, &usage, &NoPlugins)
        .map_err(|error| Failure::rate(error, &plan))?;
    to_json_as(&invoice, json)
}

pub fn quote_prepared(plan: &PreparedPlan<'_>, usage: &str) -> Result<String, Failure> {
    quote_prepared_as(plan, usage, Json::Exact)
}

pub fn quote_prepared_as(
    plan: &PreparedPlan<'_>,
    usage: &str,
    json: Json,
) -> Result<String, Failure> {
    let usage = parse_usage(usage)?;
    let invoice = plan
        .quote(&usage, &NoPlugins)
        .map_err(|error| Failure::rate(error, plan.plan()))?;
    to_json_as(&invoice, json)
}

/// `{"metric": "decimal"}` JSON text as metric → decimal text; a number is refused.
pub fn quantity_texts(json: &str, what: &str) -> Result<BTreeMap<String, String>, Failure> {
    // The usual case in one pass; anything else is read again below for its error.
    if let Ok(texts) = serde_json::from_str::<BTreeMap<String, String>>(json) {
        return Ok(texts);
    }
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|error| Failure::argument(format!("{what}: {error}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(Failure::argument(format!(
            "{what}: expected an object of metric → decimal string"
        )));
    };
    // Inserted one by one, not collected (a `collect` into a map is a sort's code more).
    let mut texts = BTreeMap::new();
    for (metric, value) in map {
        match value {
            serde_json::Value::String(text) => drop(texts.insert(metric, text)),
            other => {
                return Err(Failure::at(
                    "invalid_argument",
                    Some(format!("$.{metric}")),
                    format!(
                        "{what}.{metric}: expected a decimal string such as \"1200\", found {other}"
                    ),
                ));
            }
        }
    }
    Ok(texts)
}

fn decimal(text: &str, what: &str) -> Result<Decimal, Failure> {
    parse_decimal(text).map_err(|message| Failure::argument(format!("{what}: {message}")))
}

fn decimals(quantities: &BTreeMap<String, String>) -> Result<BTreeMap<String, Decimal>, Failure> {
    let mut decimals = BTreeMap::new();
    for (metric, text) in quantities {
        decimals.insert(metric.clone(), decimal(text, metric)?);
    }
    Ok(decimals)
}

/// `{"metric": "decimal"}` JSON text as metric → decimal: [`quantity_texts`] then each decimal
/// read, the usual case in one pass (a slider's total pays for no intermediate tree or texts);
/// anything else is read again the long way, for its error.
pub fn quantity_decimals(json: &str, what: &str) -> Result<BTreeMap<String, Decimal>, Failure> {
    /// An object of decimal strings, read into the map as it goes.
    struct Quantities(BTreeMap<String, Decimal>);
    impl<'de> serde::Deserialize<'de> for Quantities {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Quantities;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object of metric → decimal string")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Quantities, A::Error> {
                    let mut quantities = BTreeMap::new();
                    while let Some((metric, text)) =
                        map.next_entry::<String, std::borrow::Cow<'de, str>>()?
                    {
                        let quantity = parse_decimal(&text).map_err(serde::de::Error::custom)?;
                        quantities.insert(metric, quantity);
                    }
                    Ok(Quantities(quantities))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    match serde_json::from_str::<Quantities>(json) {
        Ok(quantities) => Ok(quantities.0),
        Err(_) => decimals(&quantity_texts(json, what)?),
    }
}

/// [`total`] of quantities given as JSON text (see [`quantity_decimals`]): read straight into
/// the plan's metric positions (`PreparedPlan::total_at`; no map of metric codes is built), the
/// usual case in one pass; an unknown metric or anything else not a decimal string is read again
/// the long way, for the total or the error it gives.
pub fn total_json(plan: &PreparedPlan<'_>, quantities: &str) -> Result<String, Failure> {
    if let Some(slots) = quantity_slots(plan, quantities) {
        let total = plan
            .total_at(&slots, &NoPlugins)
            .map_err(|error| Failure::rate(error, plan.plan()))?;
        return Ok(total_text(total));
    }
    total_of(plan, &quantity_decimals(quantities, "quantities")?)
}

/// `{"metric": "decimal"}` JSON text as quantities by metric position, or `None` for anything
/// else (a metric the plan lacks, a value not a decimal string, a string with escapes, text
/// not JSON).
fn quantity_slots(plan: &PreparedPlan<'_>, json: &str) -> Option<Vec<Option<Decimal>>> {
    /// An object of decimal strings, each read into its metric's place as it goes.
    struct Slots<'a, 'p>(&'a PreparedPlan<'p>);
    impl<'de> serde::de::DeserializeSeed<'de> for Slots<'_, '_> {
        type Value = Vec<Option<Decimal>>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> serde::de::Visitor<'de> for Slots<'_, '_> {
        type Value = Vec<Option<Decimal>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of metric → decimal string")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut slots = vec![None; self.0.plan().metrics.len()];
            // Borrowed from the text, not copied (a `Cow` would be an owned copy): a string
            // with escapes is refused here and read by the long way.
            while let Some(metric) = map.next_key::<&'de str>()? {
                let slot = self
                    .0
                    .metric_slot(metric)
                    .ok_or_else(|| serde::de::Error::custom("unknown metric"))?;
                let text = map.next_value::<&'de str>()?;
                slots[slot] = Some(parse_decimal(text).map_err(serde::de::Error::custom)?);
            }
            Ok(slots)
        }
    }
    let mut reader = serde_json::Deserializer::from_str(json);
    let slots = serde::de::DeserializeSeed::deserialize(Slots(plan), &mut reader).ok()?;
    reader.end().ok()?;
    Some(slots)
}

/// A total as the binding returns it (`Display` of the decimal, without the formatter).
fn total_text(total: Decimal) -> String {
    ratecard_engine::decimal::text(total)
        .render(&mut [0; 72])
        .to_owned()
}

fn total_of(
    plan: &PreparedPlan<'_>,
    quantities: &BTreeMap<String, Decimal>,
) -> Result<String, Failure> {
    let total = plan
        .total(quantities, &NoPlugins)
        .map_err(|error| Failure::rate(error, plan.plan()))?;
    Ok(total_text(total))
}

/// The invoice total of a typical full period at `quantities`, at its billed scale (`"12.50"`).
pub fn total(
    plan: &PreparedPlan<'_>,
    quantities: &BTreeMap<String, String>,
) -> Result<String, Failure> {
    total_of(plan, &decimals(quantities)?)
}

/// The validation report of plan JSON text: parse errors (each at its path) or the plan's
/// errors and lint warnings.
pub fn validate(plan: &str) -> Result<String, Failure> {
    /// The report as JavaScript sees it.
    #[derive(Serialize)]
    struct Report {
        errors: Vec<Problem>,
        warnings: Vec<Problem>,
    }
    let report = match ratecard_engine::json::parse_tracking::<Plan>(plan) {
        Ok(plan) => {
            let report = validate_plan(&plan);
            Report {
                errors: report.errors.iter().map(Problem::of).collect(),
                warnings: report.warnings.iter().map(Problem::of).collect(),
            }
        }
        Err(errors) => Report {
            errors: errors.into_iter().map(Problem::of_json).collect(),
            warnings: Vec::new(),
        },
    };
    to_json(&report)
}

pub fn cost_curve(
    plan: &Plan,
    metric: &str,
    from: &str,
    to: &str,
    samples: u32,
    base: &BTreeMap<String, String>,
) -> Result<String, Failure> {
    let curve = estimate::cost_curve(
        plan,
        metric,
        decimal(from, "from")?,
        decimal(to, "to")?,
        samples,
        &decimals(base)?,
        &NoPlugins,
    )
    .map_err(|error| Failure::estimate(error, plan))?;
    to_json(&curve)
}

pub fn break_even(
    plan: &str,
    other: &str,
    metric: &str,
    from: &str,
    to: &str,
    base: &BTreeMap<String, String>,
) -> Result<String, Failure> {
    let (plan, other) = (parse_plan(plan)?, parse_plan(other)?);
    let found = estimate::break_even(
        &plan,
        &other,
        metric,
        decimal(from, "from")?,
        decimal(to, "to")?,
        &decimals(base)?,
        &NoPlugins,
    )
    .map_err(|error| Failure::estimate(error, &plan))?;
    to_json(&found)
}

/// One plan of [`cheapest_plan`]'s ranking.
#[derive(Debug, Serialize)]
struct Ranked<'p> {
    plan_id: &'p str,
    name: &'p str,
    currency: &'p str,
    total: String,
}

pub fn cheapest_plan(
    plans: &[String],
    quantities: &BTreeMap<String, String>,
) -> Result<String, Failure> {
    let plans = plans
        .iter()
        .map(|text| parse_plan(text))
        .collect::<Result<Vec<_>, _>>()?;
    let quantities = decimals(quantities)?;
    let ranked = estimate::cheapest_plan(&plans, &quantities, &NoPlugins).map_err(|error| {
        // The ranking does not say which plan failed: name the first that does.
        let failing = plans
            .iter()
            .find(|plan| estimate::total_at(plan, &BTreeMap::new(), &NoPlugins).is_err())
            .unwrap_or(&plans[0]);
        Failure::estimate(error, failing)
    })?;
    let ranked: Vec<Ranked<'_>> = ranked
        .into_iter()
        .map(|(plan, total)| Ranked {
            plan_id: &plan.id,
            name: &plan.name,
            currency: &plan.currency,
            total: total.to_string(),
        })
        .collect();
    to_json(&ranked)
}

pub fn max_usage_for_budget(
    plan: &Plan,
    metric: &str,
    budget: &str,
    max: Option<&str>,
    base: &BTreeMap<String, String>,
) -> Result<Option<String>, Failure> {
    let max = max.map(|max| decimal(max, "max")).transpose()?;
    let found = estimate::max_usage_within_budget(
        plan,
        metric,
        decimal(budget, "budget")?,
        max,
        &decimals(base)?,
        &NoPlugins,
    )
    .map_err(|error| Failure::estimate(error, plan))?;
    Ok(found.map(|quantity| quantity.normalize().to_string()))
}

pub fn breakpoints(plan: &Plan, metric: &str) -> Vec<String> {
    estimate::breakpoints(plan, metric)
        .into_iter()
        .map(|point| point.normalize().to_string())
        .collect()
}

/// Every timezone compiled in (all of IANA natively; the browser build's filtered set).
pub fn timezones() -> Vec<String> {
    chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"{"id":"p","currency":"USD","interval":"month",
        "metrics":[{"code":"calls","aggregation":{"type":"count"}}],
        "charges":[{"id":"calls","metric":"calls","model":{"type":"graduated","tiers":[
            {"up_to":"100","unit_price":"0.10"},{"up_to":null,"unit_price":"0.05"}]}}]}"#;

    fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn total_is_the_quote_total_at_its_scale() {
        let plan = prepare(PLAN).unwrap();
        assert_eq!(
            total(&plan, &quantities(&[("calls", "150")])).unwrap(),
            "12.50"
        );
    }

    #[test]
    fn quantities_from_json_read_as_the_long_way_does() {
        let plan = prepare(PLAN).unwrap();
        for json in [
            r#"{"calls":"150"}"#,
            r#"{"calls":"1.5e2"}"#,
            r#"{"calls":"150","calls":"7"}"#,
            r#"{"calls":150}"#,
            r#"{"calls":"abc"}"#,
            r#"{"calls":"-1"}"#,
            r#"{"nope":"1"}"#,
            r#"{"calls":"\u0031"}"#,
            r#"{"c\u0061lls":"150"}"#,
            r#"{"calls":" 150 "}"#,
            r#"{"calls":"150"} x"#,
            "{}",
            "[]",
            "{",
        ] {
            let long = quantity_texts(json, "quantities").and_then(|q| total(&plan, &q));
            assert_eq!(total_json(&plan, json), long, "{json}");
        }
    }

    #[test]
    fn ascii_json_is_the_same_value() {
        let plan = prepare(PLAN).unwrap();
        let usage = r#"{"customer":{"id":"äcme 🦀"},"subscription":{"start":"2026-11-01"},"quantities":{"calls":"150"}}"#;
        let exact = quote_prepared_as(&plan, usage, Json::Exact).unwrap();
        let ascii = quote_prepared_as(&plan, usage, Json::Ascii).unwrap();
        assert!(ascii.is_ascii() && !exact.is_ascii());
        assert!(ascii.contains(r"\ud83e\udd80"), "{ascii}");
        let value = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        assert_eq!(value(&exact), value(&ascii));
    }

    #[test]
    fn parse_errors_carry_every_path() {
        let failure = prepare(
            r#"{"id":"p","currency":7,"interval":"month","metrics":[],"charges":[{"id":1}]}"#,
        )
        .unwrap_err();
        assert_eq!(failure.code, "invalid_json");
        assert_eq!(failure.path.as_deref(), Some("$.currency"));
        let report: serde_json::Value =
            serde_json::from_str(failure.report.as_deref().unwrap()).unwrap();
        assert_eq!(report["document"], "plan");
        assert!(
            report["issues"].as_array().unwrap().len() >= 2,
            "{failure:?}"
        );
    }

    #[test]
    fn invalid_plan_points_at_the_tier() {
        let bad = PLAN.replace(r#""up_to":"100""#, r#""up_to":"-5""#);
        let failure = prepare(&bad).unwrap_err();
        assert_eq!(failure.code, "invalid_plan");
        assert!(
            failure
                .path
                .as_deref()
                .unwrap()
                .starts_with("$.charges[0].model.tiers[0]"),
            "{failure:?}"
        );
    }

    #[test]
    fn a_quantity_as_a_number_is_refused() {
        let failure = quantity_texts(r#"{"calls":150}"#, "quantities").unwrap_err();
        assert_eq!(failure.path.as_deref(), Some("$.calls"));
        assert!(failure.message.contains("decimal string"));
    }

    #[test]
    fn usage_errors_keep_their_path() {
        let failure = quote(PLAN, r#"{"quantities":{"calls":"-1"}}"#).unwrap_err();
        assert_eq!(failure.code, "invalid_usage");
        assert_eq!(failure.path.as_deref(), Some("$.quantities.calls"));
    }

    #[test]
    fn a_problem_is_the_issue_as_it_serializes() {
        let bad = PLAN.replace(r#""up_to":"100""#, r#""up_to":"-5""#);
        let report = validate_plan(&serde_json::from_str(&bad).unwrap());
        let issues = report.errors.iter().chain(&report.warnings);
        let mut n_issues = 0;
        for issue in issues {
            let value = serde_json::to_value(issue).unwrap();
            let problem = Problem::of(issue);
            assert_eq!(value["severity"], problem.severity.as_str());
            assert_eq!(value["code"], problem.code.as_str());
            n_issues += 1;
        }
        assert!(n_issues >= 1);
    }

    #[test]
    fn validate_reports_parse_errors_as_issues() {
        let report: serde_json::Value = serde_json::from_str(&validate("{").unwrap()).unwrap();
        assert_eq!(report["errors"][0]["code"], "invalid_json");
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "null",
            "[]",
            "{\"id\":",
            "\u{0}",
            "{\"charges\":[[[[[]]]]]}",
        ] {
            assert!(prepare(text).is_err());
            assert!(quote(PLAN, text).is_err());
            assert!(validate(text).is_ok());
        }
    }
}
