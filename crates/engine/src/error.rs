//! Errors as tools read them: a stable code and the JSON path, whichever host reports them.
//!
//! [`ErrorReport`] is what `ratecard quote --format json` prints on failure, what the browser
//! binding's `Error` objects carry, and (without its message) what a golden vector pins, so an
//! error is compared by what it is and where, not by the wording of one host.

use serde::{Deserialize, Serialize};

use crate::json::ParseError;
use crate::rate::{ErrorCode, RateError};
use crate::validate::{Issue, IssueCode};

/// An error: its kind, the document and JSON path it is about, every finding for an invalid
/// plan or document, and the message a person reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    pub code: ErrorCode,
    /// `"plan"` or `"usage"`: which document could not be read (for `invalid_json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// The JSON path of the value at fault (the first finding's, when there are several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Each finding of an invalid plan or document, in document order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<IssueAt>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One finding of an [`ErrorReport`]: its rule and path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueAt {
    pub code: IssueCode,
    pub path: String,
}

impl From<&Issue> for IssueAt {
    fn from(issue: &Issue) -> IssueAt {
        IssueAt {
            code: issue.code,
            path: issue.path.clone(),
        }
    }
}

impl From<&RateError> for ErrorReport {
    fn from(error: &RateError) -> ErrorReport {
        let issues = match error {
            RateError::InvalidPlan(issues) => issues.iter().map(IssueAt::from).collect(),
            _ => Vec::new(),
        };
        ErrorReport {
            code: error.code(),
            document: None,
            path: error.path().map(str::to_owned),
            issues,
            message: error.to_string(),
        }
    }
}

impl ErrorReport {
    /// `document` (`"plan"`, `"usage"`) could not be read: every error of
    /// [`json::parse`](crate::json::parse), the first one's path as the report's.
    pub fn invalid_json(document: &str, errors: &[ParseError]) -> ErrorReport {
        let issues: Vec<IssueAt> = errors
            .iter()
            .map(|error| IssueAt {
                code: IssueCode::InvalidJson,
                path: error.path.clone(),
            })
            .collect();
        let message = errors
            .iter()
            .map(ParseError::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        ErrorReport {
            code: ErrorCode::InvalidJson,
            document: Some(document.to_owned()),
            path: issues.first().map(|issue| issue.path.clone()),
            issues,
            message: format!("{document}: {message}"),
        }
    }

    /// Fills the path of an error about a charge of `plan` (`$.charges[2]`), which a
    /// [`RateError`] names by id.
    pub fn in_plan(mut self, plan: &crate::plan::Plan, error: &RateError) -> ErrorReport {
        if let (None, RateError::Charge { charge, .. } | RateError::Plugin { charge, .. }) =
            (&self.path, error)
        {
            self.path = plan
                .charges
                .iter()
                .position(|c| &c.id == charge)
                .map(|idx| format!("$.charges[{idx}]"));
        }
        self
    }

    /// The report without its message: what a golden vector pins.
    pub fn without_message(mut self) -> ErrorReport {
        self.message.clear();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

    #[test]
    fn an_invalid_plan_reports_every_finding_with_its_path() {
        let plan: Plan = serde_json::from_str(
            r#"{"id": "p", "currency": "XYZ", "charges": [{"id": "c", "metric": "m",
                "model": {"type": "per_unit", "unit_price": "1"}}]}"#,
        )
        .unwrap();
        let error = crate::rate::quote(
            &plan,
            &serde_json::from_str(r#"{"period": {"index": 0}}"#).unwrap(),
            &crate::plugin::NoPlugins,
        )
        .unwrap_err();
        let report = ErrorReport::from(&error);
        assert_eq!(report.code, ErrorCode::InvalidPlan);
        assert_eq!(report.path.as_deref(), Some("$.currency"));
        let issues: Vec<(IssueCode, &str)> = report
            .issues
            .iter()
            .map(|i| (i.code, i.path.as_str()))
            .collect();
        assert_eq!(
            issues,
            [
                (IssueCode::UnknownCurrency, "$.currency"),
                (IssueCode::UnknownMetric, "$.charges[0].metric")
            ]
        );
        let json = serde_json::to_value(report.without_message()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "invalid_plan", "path": "$.currency", "issues": [
                {"code": "unknown_currency", "path": "$.currency"},
                {"code": "unknown_metric", "path": "$.charges[0].metric"}]})
        );
    }

    #[test]
    fn an_unreadable_document_names_itself_and_each_path() {
        let errors = crate::json::parse::<Plan>(
            r#"{"id": "p", "currency": "USD", "charges": [{"id": "c", "model": {"type": "flat", "amount": "ten"}}], "minimum_commitment": true}"#,
        )
        .unwrap_err();
        let report = ErrorReport::invalid_json("plan", &errors);
        assert_eq!(report.code, ErrorCode::InvalidJson);
        assert_eq!(report.document.as_deref(), Some("plan"));
        let paths: Vec<&str> = report.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["$.charges[0].model.amount", "$.minimum_commitment"]);
        assert_eq!(report.path.as_deref(), Some(paths[0]));
        assert!(report.message.starts_with("plan: $."), "{}", report.message);
    }
}
