//! Metering (being written).
