//! The plugin `event-batch` (`list<u8>` in `crates/plugin-sdk/wit/plugin.wit`), written and read
//! in one place: the host writes its batches with [`BatchWriter`], the guest SDK reads them with
//! [`BatchView::parse`], and the SDK's native test batches come from the same writer.
//!
//! # Layout
//!
//! Columns in one byte buffer, little-endian, back to back in this order:
//!
//! 1. a header of eight `u32` counts — events, properties, names, strings, numbers, bytes of
//!    names, bytes of ids, bytes of strings — and the `u32` [`field`] word (which of ids,
//!    customers and codes the batch holds; a part left out has an empty column);
//! 2. `i64` timestamps (ms), one per event; `u64` low words of the number magnitudes;
//! 3. `u32` columns: number high words, name ends, id ends, customer name indexes, code name
//!    indexes, property ends (per event: the end of its properties), property name indexes,
//!    string ends;
//! 4. `u8` columns: property [`kind`]s, number scales;
//! 5. UTF-8 text: names (each distinct customer, code and property name once per batch), ids,
//!    strings.
//!
//! A number is exact: ±(hi·2^64 + lo)/10^scale, a 96-bit magnitude and a scale ≤ 28 (the range
//! of `rust_decimal`), never a float.
//!
//! # Errors
//!
//! Every way a buffer can be wrong is a [`BatchError`]; [`BatchView::parse`] checks every
//! count, offset, name index, kind and scale once, after which reading the view cannot fail
//! and never panics (an accessor past a column reads zero or empty text).

pub(crate) mod read;
mod reads;
mod write;

#[cfg(test)]
mod tests;

pub use read::{BatchView, U32s, number, same_text, u64_at};
pub use reads::Reads;
pub use write::{BatchWriter, Columns, WireEvent, WireValue};

/// The kinds of property values in an `event-batch`.
pub mod kind {
    pub const STR: u8 = 0;
    pub const NUM: u8 = 1;
    pub const NEG_NUM: u8 = 2;
    pub const FALSE: u8 = 3;
    pub const TRUE: u8 = 4;
    pub const NULL: u8 = 5;
    pub const OTHER: u8 = 6;
}

/// The bits of an `event-batch`'s `fields` word: which of the parts a metric may leave out the
/// batch holds.
pub mod field {
    pub const IDS: u32 = 1;
    pub const CUSTOMERS: u32 = 2;
    pub const CODES: u32 = 4;
    pub const ALL: u32 = IDS | CUSTOMERS | CODES;
}

/// Why a buffer is not an `event-batch`, or why events do not fit in one.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// The buffer ends before the columns its header counts.
    Truncated,
    /// A text column is not UTF-8.
    NotUtf8,
    /// The `fields` word has bits the contract does not define.
    UnknownFields,
    /// The buffer goes on past its last column.
    TrailingBytes,
    /// A text end decreases, passes its column or splits a character.
    TextOutOfColumn,
    /// A customer, code or property name index is not one of the batch's names.
    NameOutOfRange,
    /// An event's property end decreases or passes the properties.
    PropertyRangeOutOfBatch,
    /// Properties remain after the last event's.
    PropertiesLeftOver,
    /// A number's scale is above 28.
    NumberOutOfRange,
    /// A string property past the last string.
    StringMissing,
    /// A number property past the last number.
    NumberMissing,
    /// A property kind is not one of [`kind`].
    UnknownKind,
    /// Strings or numbers remain that no property has.
    ValuesLeftOver,
    /// (Writing) the events' texts or properties pass the 32-bit counts and offsets.
    TooLarge { n_events: usize },
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BatchError::Truncated => "the buffer is shorter than its counts",
            BatchError::NotUtf8 => "text is not UTF-8",
            BatchError::UnknownFields => "unknown fields",
            BatchError::TrailingBytes => "bytes are left over",
            BatchError::TextOutOfColumn => "a text item is out of its column",
            BatchError::NameOutOfRange => "a name index is out of range",
            BatchError::PropertyRangeOutOfBatch => "a property range is out of the batch",
            BatchError::PropertiesLeftOver => "properties are left over",
            BatchError::NumberOutOfRange => "a number is out of range",
            BatchError::StringMissing => "a string property has no string",
            BatchError::NumberMissing => "a number property has no number",
            BatchError::UnknownKind => "unknown property kind",
            BatchError::ValuesLeftOver => "values are left over",
            BatchError::TooLarge { n_events } => {
                return write!(
                    f,
                    "a batch of {n_events} events is too large for one update: split it"
                );
            }
        })
    }
}

impl std::error::Error for BatchError {}
