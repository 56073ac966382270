//! The customer portal: links an operator hands a customer, and the read-only API the portal
//! page (`web/portal.html`) calls with them.
//!
//! A link is a random token (32 bytes from `/dev/urandom`, `rp_` + hex) whose SHA-256 alone is
//! kept (`portal_links`), with an expiry from the server's [`Clock`](super::Clock) and a
//! revocation. The URL is `/portal.html#token=…`: the token is in the fragment, which a browser
//! never sends to the server (nor logs put it anywhere); the page sends it as
//! `Authorization: Bearer …` to `/portal/v1/…`.
//!
//! Isolation: every portal handler takes a [`PortalCustomer`], which only a valid token of a
//! live link gives, and reads only that customer's rows: the customer id is part of every
//! query (an invoice is looked up by `(customer, number)` in one query), so another customer's
//! invoice and a missing one are the same lookup with the same answer. Operator keys and portal
//! tokens live in different tables: neither opens the other's endpoints.
//!
//! Usage over the period ([`Server::usage_days`]): the period's events in timestamp order
//! through one engine `Aggregator` of the customer's plan, read at each local day's end.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use ratecard_engine::invoice::Invoice;
use ratecard_engine::meter::{Aggregator, MeteredUsage, Window};

use super::reports::{
    additive, aggregation_type, sorted_events, totals_at_day_ends, totals_at_day_ends_replayed,
};
use ratecard_engine::plan::{Aggregation, Plan};
use ratecard_engine::rate::RateError;
use ratecard_engine::usage::Timestamp;
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::api::{Api, error, json_response, key_hash, read_body, server_error};
use super::openapi::{Body, Operation, schema};
use super::store::StoredPortalLink;
use super::{LiveUsage, PlanRef, Server, ServerError};

/// A portal token starts with this (an operator key with `rk_`): tells them apart in logs and
/// in a support ticket, never used to decide anything.
pub const PORTAL_TOKEN_PREFIX: &str = "rp_";

/// Expiry of a link when the request names none, and the longest allowed.
pub const DEFAULT_EXPIRES_IN_DAYS: u32 = 30;
pub const MAX_EXPIRES_IN_DAYS: u32 = 365;

const DAY_MS: i64 = 86_400_000;

/// A new portal link: the only time its token is seen.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PortalLink {
    /// Names the link (to list and revoke it); opens nothing.
    pub id: String,
    pub customer_id: String,
    /// The bearer token of `/portal/v1/…` (only its SHA-256 is kept).
    pub token: String,
    /// The portal page with the token in the fragment (never sent to the server).
    pub url: String,
    /// RFC 3339, UTC.
    pub expires_at: String,
}

/// A portal link as listed: no token.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PortalLinkInfo {
    pub id: String,
    pub customer_id: String,
    pub created_at: String,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

/// What a presented portal token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortalAccess {
    /// A live link of this customer.
    Customer(String),
    /// No link has this token.
    Unknown,
    Expired,
    Revoked,
}

/// `GET /portal/v1/usage/daily`: the current period day by day, and the usage the what-if
/// control quotes.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct UsageDays {
    pub customer_id: String,
    /// RFC 3339, UTC.
    pub as_of: String,
    pub plan: PlanRef,
    pub currency: String,
    /// The period: index, start and end in the customer's timezone.
    pub period: ratecard_engine::invoice::PeriodInfo,
    /// The part of the period gone by, from 0 to 1 (as live usage gives it).
    pub elapsed: String,
    pub metrics: Vec<MetricUsage>,
    /// The period's local days up to today.
    pub days: Vec<DayUsage>,
    /// A usage document (`ratecard quote --usage`) of this period with the projected
    /// quantities of every metric (and the transactions of those priced per transaction):
    /// quoted with the plan it gives the projected bill, and with the quantities scaled, a
    /// what-if.
    #[schemars(with = "ratecard_engine::usage::Usage")]
    pub what_if: Value,
}

/// One metric of the plan in the period so far.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct MetricUsage {
    pub code: String,
    pub name: String,
    pub unit: String,
    /// The aggregation's type (`count`, `sum`, `time_weighted_average`, …).
    pub aggregation: String,
    /// Whether its days add up (`count`, `sum`): a day's quantity is given only then.
    pub additive: bool,
    /// The quantity so far (all groups).
    pub quantity: String,
    /// The quantity at the period's end if it goes on as so far (additive metrics scaled by
    /// the period's length over the time elapsed, as live usage projects; the others as they
    /// stand).
    pub projected_quantity: String,
    pub groups: Vec<GroupUsage>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct GroupUsage {
    pub group: BTreeMap<String, String>,
    pub quantity: String,
    pub projected_quantity: String,
    /// Each counted event's value, for a metric a charge prices per transaction (minimum,
    /// maximum, fixed fee or free events per transaction); the projection keeps them as they
    /// are, as the engine's does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions: Option<Vec<String>>,
}

/// One local day of the period.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct DayUsage {
    /// The local date, `2026-11-05`.
    pub date: String,
    /// Its first instant (RFC 3339 in the customer's timezone).
    pub start: String,
    /// Metric code → that day's quantity (additive metrics) and the period's up to its end.
    pub metrics: BTreeMap<String, DayQuantity>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct DayQuantity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    pub to_date: String,
}

/// `n` random bytes from the OS, hex.
fn random_hex(n: usize) -> Result<String, ServerError> {
    let mut bytes = vec![0u8; n];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom")
            .map_err(|e| ServerError::Invalid(format!("reading /dev/urandom: {e}")))?,
        &mut bytes,
    )
    .map_err(|e| ServerError::Invalid(format!("reading /dev/urandom: {e}")))?;
    Ok(hex::encode(bytes))
}

fn link_info(link: &StoredPortalLink, now: i64) -> PortalLinkInfo {
    let status = if link.revoked_at.is_some() {
        "revoked"
    } else if now >= link.expires_at {
        "expired"
    } else {
        "active"
    };
    PortalLinkInfo {
        id: link.id.clone(),
        customer_id: link.customer_id.clone(),
        created_at: Timestamp(link.created_at).to_rfc3339(),
        expires_at: Timestamp(link.expires_at).to_rfc3339(),
        revoked_at: link.revoked_at.map(|t| Timestamp(t).to_rfc3339()),
        status: status.to_owned(),
    }
}

impl Server {
    /// Makes a portal link of `customer` (who must exist) expiring `expires_in_days` from now
    /// (1 to [`MAX_EXPIRES_IN_DAYS`]).
    pub async fn create_portal_link(
        &self,
        customer: &str,
        expires_in_days: u32,
    ) -> Result<PortalLink, ServerError> {
        if !(1..=MAX_EXPIRES_IN_DAYS).contains(&expires_in_days) {
            return Err(ServerError::Invalid(format!(
                "$.expires_in_days: {expires_in_days} is not between 1 and {MAX_EXPIRES_IN_DAYS}"
            )));
        }
        self.customer(customer).await?;
        let token = format!("{PORTAL_TOKEN_PREFIX}{}", random_hex(32)?);
        let id = format!("pl_{}", random_hex(8)?);
        let now = self.now();
        let expires_at = now.saturating_add(i64::from(expires_in_days) * DAY_MS);
        self.store
            .add_portal_link(&StoredPortalLink {
                id: id.clone(),
                customer_id: customer.to_owned(),
                token_hash: key_hash(&token),
                created_at: now,
                expires_at,
                revoked_at: None,
            })
            .await?;
        Ok(PortalLink {
            url: format!("/portal.html#token={token}"),
            id,
            customer_id: customer.to_owned(),
            token,
            expires_at: Timestamp(expires_at).to_rfc3339(),
        })
    }

    /// `customer`'s portal links (who must exist), newest first.
    pub async fn portal_links(&self, customer: &str) -> Result<Vec<PortalLinkInfo>, ServerError> {
        self.customer(customer).await?;
        let now = self.now();
        Ok(self
            .store
            .portal_links(customer)
            .await?
            .iter()
            .map(|link| link_info(link, now))
            .collect())
    }

    /// Revokes link `id` from now on; `None` when there is no such link.
    pub async fn revoke_portal_link(
        &self,
        id: &str,
    ) -> Result<Option<PortalLinkInfo>, ServerError> {
        let now = self.now();
        Ok(self
            .store
            .revoke_portal_link(id, now)
            .await?
            .map(|link| link_info(&link, now)))
    }

    /// What `token` opens.
    pub async fn portal_access(&self, token: &str) -> Result<PortalAccess, ServerError> {
        let Some(link) = self.store.portal_link_by_hash(&key_hash(token)).await? else {
            return Ok(PortalAccess::Unknown);
        };
        Ok(if link.revoked_at.is_some() {
            PortalAccess::Revoked
        } else if self.now() >= link.expires_at {
            PortalAccess::Expired
        } else {
            PortalAccess::Customer(link.customer_id)
        })
    }

    /// `customer`'s current period day by day (see the module docs), with each metric's
    /// quantity so far and projected; `None` when no subscription is in force now. With a plan
    /// change inside the period, the plan in force now meters the whole period here.
    pub async fn usage_days(&self, customer: &str) -> Result<Option<UsageDays>, ServerError> {
        let known = self.known_customer(customer).await?;
        let now = self.now();
        let Some((plan_ref, rater)) =
            self.open_period(&known.record, &known.changes, &Timestamp(now).to_rfc3339())?
        else {
            return Ok(None);
        };
        let period = rater.period();
        let prepared = self.plan(&plan_ref)?;
        let plan = prepared.plan();
        let setup = &known.record.setup;
        let calendar = super::calendar(plan, setup)?;
        let events = sorted_events(
            &self
                .store
                .events_in(customer, period.start.0, period.end.0)
                .await?,
        )?;
        let carry_in: BTreeMap<String, Decimal> = setup
            .carry_in
            .iter()
            .map(|(code, level)| (code.clone(), level.0))
            .collect();
        let aggregator = || {
            Aggregator::new(
                &plan.metrics,
                &plan.charges,
                Window {
                    start: period.start,
                    end: period.end,
                },
                period.start,
                &carry_in,
                self.plugins,
            )
            .map_err(RateError::from)
        };
        // The local days of the period up to today.
        let mut day_starts = Vec::new();
        let mut day_ends = Vec::new();
        let mut day_start = period.start;
        while day_start < period.end && day_start.0 <= now {
            let day_end = calendar
                .add_days(day_start, 1)
                .map_err(|e| ServerError::Invalid(format!("the period's days: {e}")))?
                .min(period.end);
            day_starts.push(day_start);
            day_ends.push(day_end);
            day_start = day_end;
        }
        let totals = match totals_at_day_ends(aggregator()?, &events, &day_ends)? {
            Some(totals) => totals,
            // A plugin's metric has no snapshot: each day's end replays the events before it.
            None => totals_at_day_ends_replayed(|| Ok(aggregator()?), &events, &day_ends)?,
        };
        let mut days = Vec::with_capacity(totals.len());
        let mut previous: BTreeMap<String, Decimal> = BTreeMap::new();
        for (start, totals) in day_starts.iter().zip(totals) {
            let local = calendar.format(*start);
            let mut metrics = BTreeMap::new();
            for metric in &plan.metrics {
                let to_date = totals.get(&metric.code).copied().unwrap_or_default();
                let before = previous.get(&metric.code).copied().unwrap_or_default();
                let day = additive(&metric.aggregation, metric.recurrence)
                    .then(|| (to_date - before).normalize().to_string());
                metrics.insert(
                    metric.code.clone(),
                    DayQuantity {
                        day,
                        to_date: to_date.normalize().to_string(),
                    },
                );
            }
            previous = totals;
            days.push(DayUsage {
                date: local.get(..10).unwrap_or(&local).to_owned(),
                start: local,
                metrics,
            });
        }
        // Every event of the period (some may be timestamped later today or after).
        let mut whole = aggregator()?;
        for event in &events {
            let _outcome = whole.push(event);
        }
        let elapsed = super::live::elapsed_fraction(period.start.0, period.end.0, now);
        let scale = super::live::scale_of(elapsed);
        let metered = match whole.snapshot() {
            Some(metered) => metered,
            None => whole.finish(),
        };
        let metrics = metric_usage(plan, &metered.map_err(RateError::from)?, scale);
        let info = ratecard_engine::invoice::PeriodInfo {
            index: period.index,
            start: calendar.format(period.start),
            end: calendar.format(period.end),
            timezone: calendar.timezone().to_owned(),
            tzdata: String::new(),
        };
        let what_if = what_if_usage(customer, setup, period.index, &metrics);
        Ok(Some(UsageDays {
            customer_id: customer.to_owned(),
            as_of: Timestamp(now).to_rfc3339(),
            plan: plan_ref,
            currency: plan.currency.clone(),
            period: info,
            elapsed: elapsed.round_dp(6).to_string(),
            metrics,
            days,
            what_if,
        }))
    }
}

/// Each metric's quantities so far and projected: an additive metric's quantity times `scale`,
/// rounded as the engine's projection rounds it (counts to whole events, sums to the quantity's
/// scale or 6 places).
fn metric_usage(plan: &Plan, metered: &MeteredUsage, scale: Option<Decimal>) -> Vec<MetricUsage> {
    plan.metrics
        .iter()
        .map(|metric| {
            let is_additive = additive(&metric.aggregation, metric.recurrence);
            let whole = matches!(metric.aggregation, Aggregation::Count);
            let groups: Vec<GroupUsage> = metered
                .metrics
                .get(&metric.code)
                .into_iter()
                .flatten()
                .map(|g| {
                    let projected = match scale {
                        Some(scale) if is_additive => match g.quantity.checked_mul(scale) {
                            Some(p) if whole => p.round(),
                            Some(p) => p.round_dp(g.quantity.scale().max(6)),
                            None => g.quantity,
                        },
                        _ => g.quantity,
                    };
                    GroupUsage {
                        group: g.group.clone(),
                        quantity: g.quantity.normalize().to_string(),
                        projected_quantity: projected.normalize().to_string(),
                        transactions: g
                            .transactions
                            .as_ref()
                            .map(|t| t.iter().map(|d| d.normalize().to_string()).collect()),
                    }
                })
                .collect();
            let sum = |f: fn(&GroupUsage) -> &String| -> String {
                groups
                    .iter()
                    .filter_map(|g| f(g).parse::<Decimal>().ok())
                    .sum::<Decimal>()
                    .normalize()
                    .to_string()
            };
            MetricUsage {
                code: metric.code.clone(),
                name: metric.name.clone(),
                unit: metric.unit.clone(),
                aggregation: aggregation_type(&metric.aggregation),
                additive: is_additive,
                quantity: sum(|g| &g.quantity),
                projected_quantity: sum(|g| &g.projected_quantity),
                groups,
            }
        })
        .collect()
}

/// The usage document of the period with the projected quantities (see [`UsageDays::what_if`]).
fn what_if_usage(
    customer: &str,
    setup: &ratecard_engine::usage::CustomerSetup,
    index: u32,
    metrics: &[MetricUsage],
) -> Value {
    let mut quantities = serde_json::Map::new();
    for metric in metrics {
        let ungrouped = metric.groups.len() == 1
            && metric.groups[0].group.is_empty()
            && metric.groups[0].transactions.is_none();
        let value = if metric.groups.is_empty() {
            json!("0")
        } else if ungrouped {
            json!(metric.groups[0].projected_quantity)
        } else {
            Value::Array(
                metric
                    .groups
                    .iter()
                    .map(|g| match &g.transactions {
                        Some(transactions) => json!({"group": g.group,
                            "quantity": g.projected_quantity, "transactions": transactions}),
                        None => json!({"group": g.group, "quantity": g.projected_quantity}),
                    })
                    .collect(),
            )
        };
        quantities.insert(metric.code.clone(), value);
    }
    let mut usage = json!({
        "customer": {"id": customer, "timezone": setup.timezone.as_deref().unwrap_or("UTC")},
        "period": {"index": index},
        "quantities": quantities,
    });
    if !setup.attributes.is_empty() {
        usage["customer"]["attributes"] = Value::Object(setup.attributes.clone());
    }
    if let Some(subscription) = &setup.subscription {
        usage["subscription"] = serde_json::to_value(subscription).unwrap_or(Value::Null);
    }
    if !setup.credits.is_empty() {
        usage["credits"] = serde_json::to_value(&setup.credits).unwrap_or(Value::Null);
    }
    usage
}

/// The customer a request's portal token opens: only a handler taking this reads portal data.
#[derive(Debug)]
pub struct PortalCustomer(pub String);

impl FromRequestParts<Api> for PortalCustomer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, Response> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = token else {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a portal link is needed: `Authorization: Bearer <token>` (the token of the link's #token=…)",
            ));
        };
        match api.server.portal_access(token).await {
            Ok(PortalAccess::Customer(customer)) => Ok(PortalCustomer(customer)),
            Ok(PortalAccess::Unknown) => Err(error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this is not a valid portal link: ask for a new one",
            )),
            Ok(PortalAccess::Expired) => Err(error(
                StatusCode::UNAUTHORIZED,
                "link_expired",
                "this portal link has expired: ask for a new one",
            )),
            Ok(PortalAccess::Revoked) => Err(error(
                StatusCode::UNAUTHORIZED,
                "link_revoked",
                "this portal link was revoked: ask for a new one",
            )),
            Err(failure) => Err(server_error(failure)),
        }
    }
}

/// Portal answers are one customer's private data: never cached.
fn private(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What the portal answers for an invoice that is not the customer's, whether it exists or not.
fn no_such_invoice() -> Response {
    private(error(StatusCode::NOT_FOUND, "not_found", "no such invoice"))
}

/// The portal's and the portal links' operations (see `api::operations`).
pub(super) fn operations() -> Vec<(Operation, MethodRouter<Api>)> {
    use super::openapi::Body::Json;
    let op = |method, path, id, summary, request, response| Operation {
        method,
        path,
        id,
        summary,
        operator: true,
        query: &[],
        request,
        response,
    };
    let portal = |method, path, id, summary, response| Operation {
        operator: false,
        ..op(method, path, id, summary, Body::None, response)
    };
    vec![
        (
            op(
                "post",
                "/v1/customers/{id}/portal-links",
                "createPortalLink",
                "Make a portal link of the customer: a token (shown once; only its SHA-256 is kept) expiring after `expires_in_days` (default 30, at most 365), and the portal page's URL with the token in its fragment",
                Json(schema::<PortalLinkRequest>),
                Json(schema::<PortalLink>),
            ),
            post(create_link),
        ),
        (
            op(
                "get",
                "/v1/customers/{id}/portal-links",
                "listPortalLinks",
                "The customer's portal links (no tokens), newest first, each active, expired or revoked",
                Body::None,
                Json(schema::<PortalLinkList>),
            ),
            get(list_links),
        ),
        (
            op(
                "delete",
                "/v1/portal-links/{id}",
                "revokePortalLink",
                "Revoke a portal link from now on (idempotent)",
                Body::None,
                Json(schema::<PortalLinkInfo>),
            ),
            delete(revoke_link),
        ),
        (
            portal(
                "get",
                "/portal/v1/account",
                "portalAccount",
                "Portal: the customer the link is for, their subscription and the link's expiry",
                Json(schema::<PortalAccount>),
            ),
            get(account),
        ),
        (
            portal(
                "get",
                "/portal/v1/usage",
                "portalUsage",
                "Portal: the current period so far and its projected bill (what `GET /v1/customers/{id}/usage` answers)",
                Json(schema::<LiveUsage>),
            ),
            get(usage),
        ),
        (
            portal(
                "get",
                "/portal/v1/usage/daily",
                "portalUsageDaily",
                "Portal: the current period day by day per metric, each metric's quantity so far and projected, and the usage document of the projection (for the what-if)",
                Json(schema::<UsageDays>),
            ),
            get(usage_daily),
        ),
        (
            portal(
                "get",
                "/portal/v1/plan",
                "portalPlan",
                "Portal: the plan version the customer is on",
                Json(schema::<PortalPlan>),
            ),
            get(plan),
        ),
        (
            portal(
                "get",
                "/portal/v1/invoices",
                "portalInvoices",
                "Portal: the customer's final invoices, by number",
                Json(schema::<PortalInvoiceList>),
            ),
            get(invoices),
        ),
        (
            portal(
                "get",
                "/portal/v1/payments",
                "portalPayments",
                "Portal: the customer's payments, newest first, with what was refunded of each",
                Json(schema::<PortalPaymentList>),
            ),
            get(payments),
        ),
        (
            portal(
                "get",
                "/portal/v1/invoices/{number}",
                "portalInvoice",
                "Portal: one of the customer's final invoices (another customer's answers as a missing one does)",
                Json(schema::<PortalInvoice>),
            ),
            get(invoice),
        ),
        (
            portal(
                "get",
                "/portal/v1/invoices/{number}/html",
                "portalInvoiceHtml",
                "Portal: one of the customer's final invoices as a printable HTML page",
                Body::Html,
            ),
            get(invoice_html),
        ),
    ]
}

/// `POST /v1/customers/{id}/portal-links` (an empty body takes the default expiry).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PortalLinkRequest {
    /// Days until the link expires: 1 to 365, default 30.
    #[serde(default = "default_expiry")]
    expires_in_days: u32,
}

fn default_expiry() -> u32 {
    DEFAULT_EXPIRES_IN_DAYS
}

#[derive(Serialize, JsonSchema)]
struct PortalLinkList {
    links: Vec<PortalLinkInfo>,
}

/// `GET /portal/v1/account`.
#[derive(Serialize, JsonSchema)]
struct PortalAccount {
    customer_id: String,
    subscription: super::Subscription,
    /// The plan's name (the plan version is in the subscription).
    #[serde(skip_serializing_if = "Option::is_none")]
    plan_name: Option<String>,
}

/// `GET /portal/v1/plan`.
#[derive(Serialize, JsonSchema)]
struct PortalPlan {
    id: String,
    version: i64,
    plan: Plan,
}

/// One of the customer's invoices as listed.
#[derive(Serialize, JsonSchema)]
struct PortalInvoiceSummary {
    number: i64,
    /// The period, in the customer's timezone (RFC 3339).
    period_start: String,
    period_end: String,
    currency: String,
    total: String,
    /// `open`, `paid`, `void` or `uncollectible`.
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<super::collect::InvoiceState>,
    /// When it is due (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    due_at: Option<String>,
    /// Paid so far, net of refunds.
    #[serde(skip_serializing_if = "Option::is_none")]
    paid: Option<String>,
    /// What is still owed.
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<String>,
}

#[derive(Serialize, JsonSchema)]
struct PortalInvoiceList {
    invoices: Vec<PortalInvoiceSummary>,
}

/// One payment of the customer's, as the portal lists it (no operator-side detail: who
/// recorded it, the provider's reference).
#[derive(Serialize, JsonSchema)]
struct PortalPayment {
    invoice: i64,
    /// When it was received (RFC 3339).
    at: String,
    method: super::collect::PaymentMethod,
    currency: String,
    amount: String,
    /// How much of it was refunded.
    refunded: String,
}

/// `GET /portal/v1/payments`: newest first.
#[derive(Serialize, JsonSchema)]
struct PortalPaymentList {
    payments: Vec<PortalPayment>,
}

/// One of the customer's invoices: its number and the engine's invoice.
#[derive(Serialize, JsonSchema)]
struct PortalInvoice {
    number: i64,
    #[schemars(with = "Invoice")]
    invoice: Value,
}

async fn create_link(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        PortalLinkRequest {
            expires_in_days: DEFAULT_EXPIRES_IN_DAYS,
        }
    } else {
        match read_body::<PortalLinkRequest>("portal_link", &body) {
            Ok(request) => request,
            Err(response) => return response,
        }
    };
    match api
        .server
        .create_portal_link(&id, request.expires_in_days)
        .await
    {
        Ok(link) => {
            tracing::info!(customer = %id, link = %link.id, "portal link created");
            private(json_response(StatusCode::CREATED, &link))
        }
        Err(failure) => server_error(failure),
    }
}

async fn list_links(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.server.portal_links(&id).await {
        Ok(links) => json_response(StatusCode::OK, &PortalLinkList { links }),
        Err(failure) => server_error(failure),
    }
}

async fn revoke_link(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.server.revoke_portal_link(&id).await {
        Ok(Some(link)) => {
            tracing::info!(link = %id, "portal link revoked");
            json_response(StatusCode::OK, &link)
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such portal link"),
        Err(failure) => server_error(failure),
    }
}

fn no_subscription() -> Response {
    private(error(
        StatusCode::NOT_FOUND,
        "not_subscribed",
        "there is no subscription in force now",
    ))
}

async fn account(State(api): State<Api>, PortalCustomer(customer): PortalCustomer) -> Response {
    match api.server.subscription(&customer).await {
        Ok(subscription) => {
            let plan_name = subscription.plan.as_ref().and_then(|p| {
                api.server
                    .plan(p)
                    .ok()
                    .map(|prepared| prepared.plan().name.clone())
            });
            private(json_response(
                StatusCode::OK,
                &PortalAccount {
                    customer_id: customer,
                    subscription,
                    plan_name,
                },
            ))
        }
        Err(failure) => server_error(failure),
    }
}

async fn usage(State(api): State<Api>, PortalCustomer(customer): PortalCustomer) -> Response {
    match api.server.live_usage(&customer).await {
        Ok(Some(usage)) => private(json_response(StatusCode::OK, &usage)),
        Ok(None) => no_subscription(),
        Err(failure) => server_error(failure),
    }
}

async fn usage_daily(State(api): State<Api>, PortalCustomer(customer): PortalCustomer) -> Response {
    match api.server.usage_days(&customer).await {
        Ok(Some(days)) => private(json_response(StatusCode::OK, &days)),
        Ok(None) => no_subscription(),
        Err(failure) => server_error(failure),
    }
}

async fn plan(State(api): State<Api>, PortalCustomer(customer): PortalCustomer) -> Response {
    let record = match api.server.customer(&customer).await {
        Ok(record) => record,
        Err(failure) => return server_error(failure),
    };
    let Some(plan_ref) = record.plan else {
        return no_subscription();
    };
    match api.server.plan(&plan_ref) {
        Ok(prepared) => private(json_response(
            StatusCode::OK,
            &PortalPlan {
                id: plan_ref.id,
                version: plan_ref.version,
                plan: prepared.plan().clone(),
            },
        )),
        Err(failure) => server_error(failure),
    }
}

/// The customer's books, each as the API shows it, by invoice number.
async fn their_books(
    api: &Api,
    customer: &str,
) -> Result<BTreeMap<i64, super::collect::CollectionView>, Response> {
    let books = api
        .server
        .store()
        .books(customer)
        .await
        .map_err(|failure| server_error(failure.into()))?;
    books
        .iter()
        .map(|book| Ok((book.invoice.number, book.view()?)))
        .collect::<Result<_, super::collect::Overflow>>()
        .map_err(|overflow| server_error(overflow.into()))
}

async fn invoices(State(api): State<Api>, PortalCustomer(customer): PortalCustomer) -> Response {
    let books = match their_books(&api, &customer).await {
        Ok(books) => books,
        Err(response) => return response,
    };
    match api.server.store().customer_invoices(&customer).await {
        Ok(stored) => {
            let invoices = stored
                .iter()
                .filter_map(|s| {
                    let invoice: Invoice = serde_json::from_str(&s.body).ok()?;
                    let book = books.get(&s.number);
                    Some(PortalInvoiceSummary {
                        number: s.number,
                        period_start: invoice.period.start,
                        period_end: invoice.period.end,
                        currency: invoice.currency,
                        total: invoice.total.0.to_string(),
                        state: book.map(|b| b.state),
                        due_at: book.map(|b| b.due_at.clone()),
                        paid: book.map(|b| b.paid.clone()),
                        balance: book.map(|b| b.balance.clone()),
                    })
                })
                .collect();
            private(json_response(
                StatusCode::OK,
                &PortalInvoiceList { invoices },
            ))
        }
        Err(failure) => server_error(failure.into()),
    }
}

async fn payments(State(api): State<Api>, PortalCustomer(customer): PortalCustomer) -> Response {
    let books = match their_books(&api, &customer).await {
        Ok(books) => books,
        Err(response) => return response,
    };
    let mut payments: Vec<PortalPayment> = books
        .values()
        .flat_map(|book| {
            book.payments.iter().map(|p| PortalPayment {
                invoice: p.invoice,
                at: p.at.clone(),
                method: p.method,
                currency: book.currency.clone(),
                amount: p.amount.clone(),
                refunded: p.refunded.clone(),
            })
        })
        .collect();
    // RFC 3339 UTC instants of one format sort as text.
    payments.sort_by(|a, b| b.at.cmp(&a.at).then(b.invoice.cmp(&a.invoice)));
    private(json_response(
        StatusCode::OK,
        &PortalPaymentList { payments },
    ))
}

/// The customer's invoice `number`: `Err` with the answer when it is not theirs, missing, or
/// not a number (all the same answer).
async fn their_invoice(
    api: &Api,
    customer: &str,
    number: &str,
) -> Result<super::store::StoredInvoice, Response> {
    // Not a number: the same lookup as a missing one still runs, so the answer takes as long.
    let parsed = number.parse::<i64>().ok().filter(|n| *n > 0);
    match api
        .server
        .store()
        .customer_invoice(customer, parsed.unwrap_or(0))
        .await
    {
        Ok(Some(stored)) if parsed.is_some() => Ok(stored),
        Ok(_) => Err(no_such_invoice()),
        Err(failure) => Err(server_error(failure.into())),
    }
}

async fn invoice(
    State(api): State<Api>,
    PortalCustomer(customer): PortalCustomer,
    Path(number): Path<String>,
) -> Response {
    match their_invoice(&api, &customer, &number).await {
        Ok(stored) => private(json_response(
            StatusCode::OK,
            &PortalInvoice {
                number: stored.number,
                invoice: serde_json::from_str::<Value>(&stored.body).unwrap_or(Value::Null),
            },
        )),
        Err(response) => response,
    }
}

async fn invoice_html(
    State(api): State<Api>,
    PortalCustomer(customer): PortalCustomer,
    Path(number): Path<String>,
) -> Response {
    let stored = match their_invoice(&api, &customer, &number).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    // The customer sees what they owe: state, due date, payments and balance, as the
    // operator's page shows them (the invoice is theirs: checked above).
    let collection = match api.server.store().book(stored.number).await {
        Ok(book) => match book.as_ref().map(super::collect::Book::view).transpose() {
            Ok(view) => view,
            Err(overflow) => return server_error(overflow.into()),
        },
        Err(failure) => return server_error(failure.into()),
    };
    match serde_json::from_str::<Invoice>(&stored.body) {
        Ok(invoice) => private(
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                )],
                super::html::invoice_page(stored.number, &invoice, collection.as_ref()),
            )
                .into_response(),
        ),
        Err(failure) => server_error(ServerError::Invalid(format!(
            "stored invoice {}: {failure}",
            stored.number
        ))),
    }
}
