//! `ratecard-wasm`: the engine in the browser. A thin wasm-bindgen binding: it converts JavaScript
//! values to the engine's types and back, and maps engine errors to JavaScript `Error`s. It holds
//! no pricing logic; every number comes from `ratecard-engine`.
//!
//! Design decisions:
//! - **One JSON parser.** Plans and usage cross as JSON text (an object is first turned into text
//!   by the browser's own `JSON.stringify`) and are read by the engine's `json::parse`, the same
//!   reader the CLI uses, so an error names every JSON path the CLI would. The engine already
//!   links `serde_json` (for input hashes), so a second reader such as serde-wasm-bindgen would
//!   only add code. Invoices leave as the engine's JSON (`quoteJson`, byte-identical to native)
//!   or parsed by the browser's `JSON.parse` (`quote`).
//! - **Amounts are decimal strings**, in and out. A quantity or budget given as a JS number is
//!   refused: a number has already lost the decimal a person typed.
//! - **Errors are `Error` objects** with `message` and properties `path` (a JSON path such as
//!   `$.charges[1].model.tiers[0].unit_price`, or `null`), `code` and, for what the engine
//!   reports, `report` (its `ErrorReport`, as the native engine serializes it), `document`
//!   (`plan` or `usage` for a document that cannot be read) and `issues` (every problem with its
//!   path and code).
//!
//! [`convert`] holds the conversions that do not touch JavaScript values, so they are tested
//! natively; the `#[wasm_bindgen]` functions below only move values across.

use std::collections::BTreeMap;

use js_sys::{Array, JSON, Reflect};
use ratecard_engine::rate::PreparedPlan;
use wasm_bindgen::prelude::*;

pub mod convert;

use convert::Failure;

impl From<Failure> for JsValue {
    fn from(failure: Failure) -> JsValue {
        let error = js_sys::Error::new(&failure.message);
        // Setting a property of a fresh object cannot fail.
        let set = |key: &str, value: &JsValue| drop(Reflect::set(&error, &key.into(), value));
        set("name", &"RatecardError".into());
        set("code", &failure.code.as_str().into());
        set(
            "path",
            &failure.path.as_deref().map_or(JsValue::NULL, JsValue::from),
        );
        // The engine's report as an object: `{code, document?, path?, issues?, message}`.
        if let Some(report) = failure.report.as_deref().and_then(|r| JSON::parse(r).ok()) {
            for key in ["document", "issues"] {
                if let Ok(value) = Reflect::get(&report, &key.into())
                    && !value.is_undefined()
                {
                    set(key, &value);
                }
            }
            set("report", &report);
        }
        error.into()
    }
}

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
import type { Plan, Usage, Invoice } from "./ratecard_types";
export type { Plan, Usage, Invoice };
/** Metric code → quantity as a decimal string ("2350000", "12.5"). */
export type Quantities = Record<string, string>;
/** One problem of a document or plan, at its JSON path. */
export interface Problem { severity: "error" | "warning"; code: string; path: string; message: string; }
export interface Report { errors: Problem[]; warnings: Problem[]; }
export interface CurvePoint { quantity: string; total: string; }
export interface BreakEven { quantity: string; cheaper_below: string; cheaper_above: string; }
export interface RankedPlan { plan_id: string; name: string; currency: string; total: string; }
/** What the binding throws: an `Error` with the engine's message, a code and the JSON path. */
export interface ErrorReport { code: string; document?: string; path?: string; issues?: { code: string; path: string }[]; message: string; }
export interface RatecardError extends Error { code: string; path: string | null; document?: string; issues?: { code: string; path: string }[]; report?: ErrorReport; }
"#;

/// JSON text of a JS value: a string as it is, anything else through `JSON.stringify`.
fn text_of(value: &JsValue, what: &str) -> Result<String, Failure> {
    if let Some(text) = value.as_string() {
        return Ok(text);
    }
    JSON::stringify(value)
        .ok()
        .and_then(|text| text.as_string())
        .ok_or_else(|| Failure::argument(format!("{what}: expected JSON text or an object")))
}

/// Engine JSON to a JS value through the browser's `JSON.parse` (decimals are strings in it).
fn parsed(json: &str) -> Result<JsValue, Failure> {
    JSON::parse(json).map_err(|_| Failure::argument("the engine's output is not JSON".to_owned()))
}

fn quantities_of(value: &JsValue, what: &str) -> Result<BTreeMap<String, String>, Failure> {
    if value.is_undefined() || value.is_null() {
        return Ok(BTreeMap::new());
    }
    convert::quantity_texts(&text_of(value, what)?, what)
}

fn decimal_of(value: &JsValue, what: &str) -> Result<String, Failure> {
    value.as_string().ok_or_else(|| {
        Failure::argument(format!(
            "{what}: expected a decimal string such as \"12.50\""
        ))
    })
}

fn optional_decimal_of(value: &JsValue, what: &str) -> Result<Option<String>, Failure> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    decimal_of(value, what).map(Some)
}

/// A plan validated once and quoted many times (a pricing page re-quoting on every slider move).
#[wasm_bindgen(js_name = PreparedPlan)]
#[derive(Debug)]
pub struct JsPreparedPlan {
    prepared: PreparedPlan<'static>,
}

#[wasm_bindgen(js_class = PreparedPlan)]
impl JsPreparedPlan {
    /// Parses and validates `plan` (JSON text or an object); an invalid plan throws with every issue.
    #[wasm_bindgen(constructor)]
    pub fn new(plan: &JsValue) -> Result<JsPreparedPlan, JsValue> {
        let prepared = convert::prepare(&text_of(plan, "plan")?)?;
        Ok(JsPreparedPlan { prepared })
    }

    /// The plan as an object (as the engine reads it).
    #[wasm_bindgen(getter, unchecked_return_type = "Plan")]
    pub fn plan(&self) -> Result<JsValue, JsValue> {
        Ok(parsed(&convert::to_json(self.prepared.plan())?)?)
    }

    /// Lint warnings of the plan: `[{severity, code, path, message}]`.
    #[wasm_bindgen(getter, unchecked_return_type = "Problem[]")]
    pub fn warnings(&self) -> Result<JsValue, JsValue> {
        let warnings: Vec<convert::Problem> = self
            .prepared
            .warnings()
            .iter()
            .map(convert::Problem::of)
            .collect();
        Ok(parsed(&convert::to_json(&warnings)?)?)
    }

    /// The invoice preview for `usage` (JSON text or an object), as an object.
    #[wasm_bindgen(unchecked_return_type = "Invoice")]
    pub fn quote(&self, usage: &JsValue) -> Result<JsValue, JsValue> {
        let json = convert::quote_prepared_as(
            &self.prepared,
            &text_of(usage, "usage")?,
            convert::Json::Ascii,
        )?;
        Ok(parsed(&json)?)
    }

    /// The invoice preview as the engine's JSON text (byte-identical to the native engine's).
    #[wasm_bindgen(js_name = quoteJson)]
    pub fn quote_json(&self, usage: &JsValue) -> Result<String, JsValue> {
        Ok(convert::quote_prepared(
            &self.prepared,
            &text_of(usage, "usage")?,
        )?)
    }

    /// The total of a typical full period at `quantities` (`{metric: "decimal"}`), a string.
    pub fn total(&self, quantities: &JsValue) -> Result<String, JsValue> {
        if quantities.is_undefined() || quantities.is_null() {
            return Ok(convert::total(&self.prepared, &BTreeMap::new())?);
        }
        Ok(convert::total_json(
            &self.prepared,
            &text_of(quantities, "quantities")?,
        )?)
    }

    /// Total per metric quantity, from `from` to `to` at round steps and every breakpoint.
    #[wasm_bindgen(js_name = costCurve, unchecked_return_type = "CurvePoint[]")]
    pub fn cost_curve(
        &self,
        metric: &str,
        from: &JsValue,
        to: &JsValue,
        samples: u32,
        base: &JsValue,
    ) -> Result<JsValue, JsValue> {
        let json = convert::cost_curve(
            self.prepared.plan(),
            metric,
            &decimal_of(from, "from")?,
            &decimal_of(to, "to")?,
            samples,
            &quantities_of(base, "base")?,
        )?;
        Ok(parsed(&json)?)
    }

    /// The largest quantity of `metric` within `budget` (a string), or `null`.
    #[wasm_bindgen(js_name = maxUsageForBudget)]
    pub fn max_usage_for_budget(
        &self,
        metric: &str,
        budget: &JsValue,
        base: &JsValue,
        max: &JsValue,
    ) -> Result<Option<String>, JsValue> {
        Ok(convert::max_usage_for_budget(
            self.prepared.plan(),
            metric,
            &decimal_of(budget, "budget")?,
            optional_decimal_of(max, "max")?.as_deref(),
            &quantities_of(base, "base")?,
        )?)
    }

    /// Where the cost of `metric` may bend or jump (tier, band and allowance boundaries).
    pub fn breakpoints(&self, metric: &str) -> Vec<String> {
        convert::breakpoints(self.prepared.plan(), metric)
    }
}

/// The invoice preview of `plan` for `usage` (JSON text or objects), as an object.
#[wasm_bindgen(unchecked_return_type = "Invoice")]
pub fn quote(
    #[wasm_bindgen(unchecked_param_type = "Plan | string")] plan: &JsValue,
    #[wasm_bindgen(unchecked_param_type = "Usage | string")] usage: &JsValue,
) -> Result<JsValue, JsValue> {
    let json = convert::quote_as(
        &text_of(plan, "plan")?,
        &text_of(usage, "usage")?,
        convert::Json::Ascii,
    )?;
    Ok(parsed(&json)?)
}

/// The invoice preview as the engine's JSON text (byte-identical to the native engine's).
#[wasm_bindgen(js_name = quoteJson)]
pub fn quote_json(
    #[wasm_bindgen(unchecked_param_type = "Plan | string")] plan: &JsValue,
    #[wasm_bindgen(unchecked_param_type = "Usage | string")] usage: &JsValue,
) -> Result<String, JsValue> {
    Ok(convert::quote(
        &text_of(plan, "plan")?,
        &text_of(usage, "usage")?,
    )?)
}

/// The total of a typical full period of `plan` at `quantities`, a decimal string.
#[wasm_bindgen]
pub fn total(
    #[wasm_bindgen(unchecked_param_type = "Plan | string")] plan: &JsValue,
    #[wasm_bindgen(unchecked_param_type = "Quantities")] quantities: &JsValue,
) -> Result<String, JsValue> {
    let prepared = convert::prepare(&text_of(plan, "plan")?)?;
    Ok(convert::total(
        &prepared,
        &quantities_of(quantities, "quantities")?,
    )?)
}

/// Every error (JSON and plan) with its path, and lint warnings: `{errors, warnings}`. Never throws
/// for a bad plan: the report is the answer.
#[wasm_bindgen(unchecked_return_type = "Report")]
pub fn validate(
    #[wasm_bindgen(unchecked_param_type = "Plan | string")] plan: &JsValue,
) -> Result<JsValue, JsValue> {
    Ok(parsed(&convert::validate(&text_of(plan, "plan")?)?)?)
}

/// See [`JsPreparedPlan::cost_curve`].
#[wasm_bindgen(js_name = costCurve, unchecked_return_type = "CurvePoint[]")]
pub fn cost_curve(
    #[wasm_bindgen(unchecked_param_type = "Plan | string")] plan: &JsValue,
    metric: &str,
    #[wasm_bindgen(unchecked_param_type = "string")] from: &JsValue,
    #[wasm_bindgen(unchecked_param_type = "string")] to: &JsValue,
    samples: u32,
    #[wasm_bindgen(unchecked_param_type = "Quantities | undefined")] base: &JsValue,
) -> Result<JsValue, JsValue> {
    JsPreparedPlan::new(plan)?.cost_curve(metric, from, to, samples, base)
}

/// The first usage of `metric` in `[from, to]` at which the cheaper plan changes:
/// `{quantity, cheaper_below, cheaper_above}` or `null`.
#[wasm_bindgen(js_name = breakEven, unchecked_return_type = "BreakEven | null")]
pub fn break_even(
    #[wasm_bindgen(unchecked_param_type = "Plan | string")] plan: &JsValue,
    #[wasm_bindgen(unchecked_param_type = "Plan | string")] other: &JsValue,
    metric: &str,
    #[wasm_bindgen(unchecked_param_type = "string")] from: &JsValue,
    #[wasm_bindgen(unchecked_param_type = "string")] to: &JsValue,
    #[wasm_bindgen(unchecked_param_type = "Quantities | undefined")] base: &JsValue,
) -> Result<JsValue, JsValue> {
    let json = convert::break_even(
        &text_of(plan, "plan")?,
        &text_of(other, "other")?,
        metric,
        &decimal_of(from, "from")?,
        &decimal_of(to, "to")?,
        &quantities_of(base, "base")?,
    )?;
    Ok(parsed(&json)?)
}

/// Plans (an array of JSON texts or objects) ranked by total at `quantities`, cheapest first:
/// `[{plan_id, name, currency, total}]`.
#[wasm_bindgen(js_name = cheapestPlan, unchecked_return_type = "RankedPlan[]")]
pub fn cheapest_plan(
    #[wasm_bindgen(unchecked_param_type = "Array<Plan | string>")] plans: &JsValue,
    #[wasm_bindgen(unchecked_param_type = "Quantities")] quantities: &JsValue,
) -> Result<JsValue, JsValue> {
    let plans = Array::from(plans);
    let texts = plans
        .iter()
        .enumerate()
        .map(|(idx, plan)| text_of(&plan, &format!("plans[{idx}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let json = convert::cheapest_plan(&texts, &quantities_of(quantities, "quantities")?)?;
    Ok(parsed(&json)?)
}

/// See [`JsPreparedPlan::max_usage_for_budget`].
#[wasm_bindgen(js_name = maxUsageForBudget)]
pub fn max_usage_for_budget(
    #[wasm_bindgen(unchecked_param_type = "Plan | string")] plan: &JsValue,
    metric: &str,
    #[wasm_bindgen(unchecked_param_type = "string")] budget: &JsValue,
    #[wasm_bindgen(unchecked_param_type = "Quantities | undefined")] base: &JsValue,
    #[wasm_bindgen(unchecked_param_type = "string | undefined")] max: &JsValue,
) -> Result<Option<String>, JsValue> {
    JsPreparedPlan::new(plan)?.max_usage_for_budget(metric, budget, base, max)
}

/// See [`JsPreparedPlan::breakpoints`] (the plan is only parsed, not validated).
#[wasm_bindgen]
pub fn breakpoints(
    #[wasm_bindgen(unchecked_param_type = "Plan | string")] plan: &JsValue,
    metric: &str,
) -> Result<Vec<String>, JsValue> {
    let plan = convert::parse_plan(&text_of(plan, "plan")?)?;
    Ok(convert::breakpoints(&plan, metric))
}

/// The IANA timezones this build knows (the browser build keeps a chosen set; see `docs/web.md`).
#[wasm_bindgen]
pub fn timezones() -> Vec<String> {
    convert::timezones()
}

/// The version of the engine compiled into this package.
#[wasm_bindgen(js_name = engineVersion)]
pub fn engine_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
