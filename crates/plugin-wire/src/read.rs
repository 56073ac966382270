//! Reading: a buffer → a [`BatchView`] of its columns, checked once.

use rust_decimal::Decimal;

use crate::{BatchError, field, kind};

type Result<T, E = BatchError> = std::result::Result<T, E>;

/// The number of the contract: ±(`hi` × 2^64 + `lo`) / 10^`scale` (`scale` ≤ 28, checked with
/// the batch).
#[inline]
pub fn number(lo: u64, hi: u32, scale: u8, negative: bool) -> Decimal {
    Decimal::from_parts(lo as u32, (lo >> 32) as u32, hi, negative, scale.into())
}

/// A column of little-endian `u32`s.
#[derive(Clone, Copy, Debug, Default)]
pub struct U32s<'a>(pub &'a [u8]);

impl U32s<'_> {
    pub fn is_empty(self) -> bool {
        self.0.len() < 4
    }

    pub fn len(self) -> usize {
        self.0.len() / 4
    }

    /// Item `i`, 0 past the end (callers index within checked bounds).
    #[inline]
    pub fn at(self, i: usize) -> u32 {
        match self.0.get(i * 4..i * 4 + 4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => 0,
        }
    }

    /// `(start, end)` of item `i` of a column of ends: items are back to back from 0.
    #[inline]
    pub fn range(self, i: usize) -> (usize, usize) {
        let start = if i == 0 { 0 } else { self.at(i - 1) };
        (start as usize, self.at(i) as usize)
    }

    pub fn iter(self) -> impl Iterator<Item = u32> {
        self.0
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[inline]
pub fn u64_at(column: &[u8], i: usize) -> u64 {
    match column.get(i * 8..i * 8 + 8) {
        Some(b) => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        None => 0,
    }
}

/// Splits the buffer into its columns (see `wit/plugin.wit`), in order.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize, width: usize) -> Result<&'a [u8]> {
        let len = n
            .checked_mul(width)
            .filter(|len| *len <= self.bytes.len())
            .ok_or(BatchError::Truncated)?;
        let (column, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(column)
    }

    pub(crate) fn u32s(&mut self, n: usize) -> Result<U32s<'a>> {
        self.take(n, 4).map(U32s)
    }

    pub(crate) fn text(&mut self, n: usize) -> Result<&'a str> {
        std::str::from_utf8(self.take(n, 1)?).map_err(|_| BatchError::NotUtf8)
    }
}

/// `check_ends(ends, text).is_ok()`, without a branch per item.
fn ends_are_well_formed(ends: U32s<'_>, text: &str) -> bool {
    let (mut bad, mut start) = (false, 0u32);
    for end in ends.iter() {
        // A byte past the end of `text` reads as 0, a boundary: an end past the text is caught
        // by the ends being non-decreasing up to the last, which must be inside the text.
        let next = text.as_bytes().get(end as usize).copied().unwrap_or(0);
        bad |= (end < start) | ((next as i8) < -0x40);
        start = end;
    }
    !bad && start as usize <= text.len()
}

/// Checks a column of text ends: non-decreasing, inside `text`, on character boundaries.
fn check_ends(ends: U32s<'_>, text: &str) -> Result<()> {
    let mut start = 0;
    for end in ends.iter() {
        let end = end as usize;
        if end < start || !text.is_char_boundary(end) {
            return Err(BatchError::TextOutOfColumn);
        }
        start = end;
    }
    Ok(())
}

/// `a == b` for the short texts of events (names, codes, customers) without a call to
/// `memcmp` (in wasm, a byte loop): a text of 4 to 16 bytes is two overlapping loads from each
/// side.
#[inline]
pub fn same_text(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    fn word<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
        let mut word = [0; N];
        word.copy_from_slice(&bytes[at..at + N]);
        word
    }
    match n {
        0..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..8 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        8..=16 => word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8),
        _ => a == b,
    }
}

/// The columns of one `event-batch`, borrowed from its buffer (see the crate doc for the
/// layout). Made by [`BatchView::parse`], every offset, index, kind and scale has been checked:
/// an accessor of the SDK built on it cannot fail.
#[derive(Clone, Copy, Debug)]
pub struct BatchView<'a> {
    pub n_events: usize,
    /// Which parts of the events the batch holds ([`field`] bits).
    pub fields: u32,
    pub timestamps_ms: &'a [u8],
    pub number_los: &'a [u8],
    pub number_his: U32s<'a>,
    pub name_ends: U32s<'a>,
    pub id_ends: U32s<'a>,
    pub customers: U32s<'a>,
    pub codes: U32s<'a>,
    pub property_ends: U32s<'a>,
    pub property_names: U32s<'a>,
    pub string_ends: U32s<'a>,
    pub property_kinds: &'a [u8],
    pub number_scales: &'a [u8],
    pub names: &'a str,
    pub ids: &'a str,
    pub strings: &'a str,
    /// Per property: the index of its value in the number or string columns.
    pub value_slots: &'a [u32],
}

impl<'a> BatchView<'a> {
    /// Reads the columns of an `event-batch` and checks every offset, index, kind and scale,
    /// filling `value_slots` (kept by the caller so it is reused across batches).
    pub fn parse(bytes: &'a [u8], value_slots: &'a mut Vec<u32>) -> Result<BatchView<'a>> {
        let view = Self::columns(bytes, &[])?;
        if !view.is_well_formed(value_slots) {
            // Which check failed, for the error (and `value_slots` again, the same way).
            view.check(value_slots)?;
        }
        let value_slots: &'a Vec<u32> = value_slots;
        Ok(BatchView {
            value_slots,
            ..view
        })
    }

    /// Splits `bytes` into its columns by the counts of its header, with `value_slots` as
    /// given: checks the counts and the text's UTF-8, not the contents (that is [`parse`]'s
    /// job; `columns` is for a buffer `parse` has accepted before, with its `value_slots`).
    ///
    /// [`parse`]: BatchView::parse
    pub fn columns(bytes: &'a [u8], value_slots: &'a [u32]) -> Result<BatchView<'a>> {
        let mut reader = Reader { bytes };
        let mut counts = [0usize; 8];
        for (count, n) in counts.iter_mut().zip(reader.u32s(8)?.iter()) {
            *count = n as usize;
        }
        let fields = reader.u32s(1)?.at(0);
        if fields & !field::ALL != 0 {
            return Err(BatchError::UnknownFields);
        }
        let [
            n_events,
            n_properties,
            n_names,
            n_strings,
            n_numbers,
            names_bytes,
            ids_bytes,
            strings_bytes,
        ] = counts;
        // A part left out has an empty column.
        let n_if = |bit: u32| if fields & bit != 0 { n_events } else { 0 };
        let events = BatchView {
            n_events,
            fields,
            timestamps_ms: reader.take(n_events, 8)?,
            number_los: reader.take(n_numbers, 8)?,
            number_his: reader.u32s(n_numbers)?,
            name_ends: reader.u32s(n_names)?,
            id_ends: reader.u32s(n_if(field::IDS))?,
            customers: reader.u32s(n_if(field::CUSTOMERS))?,
            codes: reader.u32s(n_if(field::CODES))?,
            property_ends: reader.u32s(n_events)?,
            property_names: reader.u32s(n_properties)?,
            string_ends: reader.u32s(n_strings)?,
            property_kinds: reader.take(n_properties, 1)?,
            number_scales: reader.take(n_numbers, 1)?,
            names: reader.text(names_bytes)?,
            ids: reader.text(ids_bytes)?,
            strings: reader.text(strings_bytes)?,
            value_slots,
        };
        if !reader.bytes.is_empty() {
            return Err(BatchError::TrailingBytes);
        }
        Ok(events)
    }

    /// `check(value_slots).is_ok()`, in two fused passes (one over events, one over properties)
    /// without a branch per item: the cost of a batch the host wrote correctly. Fills
    /// `value_slots` as `check` does.
    pub(crate) fn is_well_formed(&self, value_slots: &mut Vec<u32>) -> bool {
        let n_names = self.name_ends.len() as u32;
        let (names_ok, ids_ok, strings_ok) = (
            ends_are_well_formed(self.name_ends, self.names),
            ends_are_well_formed(self.id_ends, self.ids),
            ends_are_well_formed(self.string_ends, self.strings),
        );
        let n_properties = self.property_kinds.len();
        // Per event: the end of its properties, its customer and code names (if passed).
        let (mut bad, mut previous_end) = (false, 0u32);
        for end in self.property_ends.iter() {
            bad |= end < previous_end;
            previous_end = end;
        }
        let mut largest_name = [self.customers, self.codes]
            .map(|column| column.iter().fold(0, u32::max))
            .into_iter()
            .fold(0, u32::max);
        bad |= previous_end as usize != n_properties;
        // Per property: its name, its kind, the index of its value in its column.
        let (mut strings, mut numbers) = (0u32, 0u32);
        value_slots.clear();
        value_slots.resize(n_properties, 0);
        for ((name, value_kind), value_slot) in self
            .property_names
            .iter()
            .zip(self.property_kinds)
            .zip(value_slots.iter_mut())
        {
            largest_name = largest_name.max(name);
            let (is_str, is_num) = (
                *value_kind == kind::STR,
                matches!(*value_kind, kind::NUM | kind::NEG_NUM),
            );
            *value_slot = match (is_str, is_num) {
                (true, _) => strings,
                (_, true) => numbers,
                _ => 0,
            };
            strings += is_str as u32;
            numbers += is_num as u32;
            bad |= *value_kind > kind::OTHER;
        }
        let largest_scale = self.number_scales.iter().copied().max().unwrap_or(0);
        names_ok
            && ids_ok
            && strings_ok
            && !bad
            && (largest_name < n_names
                || self.customers.len() + self.codes.len() + n_properties == 0)
            && strings as usize == self.string_ends.len()
            && numbers as usize == self.number_scales.len()
            && largest_scale <= 28
    }

    /// The one pass that makes every accessor infallible.
    pub(crate) fn check(&self, value_slots: &mut Vec<u32>) -> Result<()> {
        check_ends(self.name_ends, self.names)?;
        check_ends(self.id_ends, self.ids)?;
        check_ends(self.string_ends, self.strings)?;
        let n_names = self.name_ends.len() as u32;
        for column in [self.customers, self.codes, self.property_names] {
            // The largest index, without a branch per item.
            if column.iter().max().is_some_and(|i| i >= n_names) {
                return Err(BatchError::NameOutOfRange);
            }
        }
        let n_properties = self.property_kinds.len();
        let mut start = 0;
        for end in self.property_ends.iter() {
            let end = end as usize;
            if end < start || end > n_properties {
                return Err(BatchError::PropertyRangeOutOfBatch);
            }
            start = end;
        }
        if start != n_properties {
            return Err(BatchError::PropertiesLeftOver);
        }
        if self
            .number_scales
            .iter()
            .max()
            .is_some_and(|scale| *scale > 28)
        {
            return Err(BatchError::NumberOutOfRange);
        }
        let (n_strings, n_numbers) = (self.string_ends.len(), self.number_scales.len());
        let (mut strings, mut numbers) = (0usize, 0usize);
        value_slots.clear();
        value_slots.resize(n_properties, 0);
        for (value_kind, value_slot) in self.property_kinds.iter().zip(value_slots.iter_mut()) {
            *value_slot = match *value_kind {
                kind::STR => {
                    if strings == n_strings {
                        return Err(BatchError::StringMissing);
                    }
                    strings += 1;
                    strings - 1
                }
                kind::NUM | kind::NEG_NUM => {
                    if numbers == n_numbers {
                        return Err(BatchError::NumberMissing);
                    }
                    numbers += 1;
                    numbers - 1
                }
                kind::FALSE | kind::TRUE | kind::NULL | kind::OTHER => 0,
                _ => return Err(BatchError::UnknownKind),
            } as u32;
        }
        if strings != n_strings || numbers != n_numbers {
            return Err(BatchError::ValuesLeftOver);
        }
        Ok(())
    }

    /// Number `slot` of the number columns.
    #[inline]
    pub fn number(&self, slot: usize, negative: bool) -> Decimal {
        let scale = self.number_scales.get(slot).copied().unwrap_or_default();
        number(
            u64_at(self.number_los, slot),
            self.number_his.at(slot),
            scale,
            negative,
        )
    }

    /// Name `i` of the batch's names (customers, codes, property names); empty past the end.
    #[inline]
    pub fn name(&self, i: u32) -> &'a str {
        let (start, end) = self.name_ends.range(i as usize);
        self.names.get(start..end).unwrap_or_default()
    }
}
