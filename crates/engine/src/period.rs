//! Billing periods (being written).
