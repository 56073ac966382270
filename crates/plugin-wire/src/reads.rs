//! [`Reads`]: what of each event a metric reads, which is what a batch written for it holds.

use crate::field;

/// What of each event a metric reads (the contract's `event-fields`, the SDK's
/// `Metric::reads`): the host passes that and nothing else, so a metric neither pays for nor
/// sees what it does not use. Timestamps are always passed.
///
/// ```
/// use ratecard_plugin_wire::Reads;
///
/// // A metric that sums `bytes` per customer:
/// let reads = Reads::timestamps().customers().property("bytes");
/// assert!(reads.reads_property("bytes") && !reads.reads_property("region"));
/// assert_eq!(reads.to_string(), "timestamps, customers, properties bytes");
/// ```
///
/// What is not read looks empty to the plugin: its id, customer and code are `""`, and a
/// property not read is missing. (The SDK's `Batch::with_reads(&events, &metric.reads())`
/// writes a test batch that leaves out what the host leaves out.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reads {
    pub ids: bool,
    pub customers: bool,
    pub codes: bool,
    /// The properties read; `None`: all of them.
    pub properties: Option<Vec<String>>,
}

impl Default for Reads {
    fn default() -> Reads {
        Reads::everything()
    }
}

impl Reads {
    /// Every part of every event: ids, customers, codes and all properties.
    pub fn everything() -> Reads {
        Reads {
            ids: true,
            customers: true,
            codes: true,
            properties: None,
        }
    }

    /// Timestamps only; add what the metric reads.
    pub fn timestamps() -> Reads {
        Reads {
            ids: false,
            customers: false,
            codes: false,
            properties: Some(Vec::new()),
        }
    }

    pub fn ids(self) -> Reads {
        Reads { ids: true, ..self }
    }

    pub fn customers(self) -> Reads {
        Reads {
            customers: true,
            ..self
        }
    }

    pub fn codes(self) -> Reads {
        Reads {
            codes: true,
            ..self
        }
    }

    /// Property `name` as well.
    pub fn property(mut self, name: &str) -> Reads {
        if let Some(names) = &mut self.properties
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_owned());
        }
        self
    }

    /// Every property.
    pub fn all_properties(self) -> Reads {
        Reads {
            properties: None,
            ..self
        }
    }

    pub fn reads_property(&self, name: &str) -> bool {
        self.properties
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }

    /// The `fields` word of a batch written for these reads.
    pub fn fields(&self) -> u32 {
        (self.ids as u32 * field::IDS)
            | (self.customers as u32 * field::CUSTOMERS)
            | (self.codes as u32 * field::CODES)
    }

    /// The bytes of the property names read (each name and 4 bytes), what a host counts of
    /// them against a plugin's output limit.
    pub fn size(&self) -> usize {
        self.properties
            .iter()
            .flatten()
            .map(|name| name.len() + 4)
            .sum()
    }
}

/// `timestamps, codes, properties mbps, region`: what an operator is shown a plugin reads.
impl std::fmt::Display for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timestamps")?;
        for (read, part) in [
            (self.ids, "ids"),
            (self.customers, "customers"),
            (self.codes, "codes"),
        ] {
            if read {
                write!(f, ", {part}")?;
            }
        }
        match &self.properties {
            None => f.write_str(", every property"),
            Some(names) if names.is_empty() => Ok(()),
            Some(names) => write!(f, ", properties {}", names.join(", ")),
        }
    }
}
