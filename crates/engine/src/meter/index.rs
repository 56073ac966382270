//! Exact string sets of an aggregation: [`StrIndex`] (group keys, unique values: strings
//! numbered in insertion order) and [`IdSet`] (event ids), both one arena indexed by the shared
//! open-addressing [`Buckets`] table, hashed by [`FxHasher`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The Fx hash (rustc's), with a final mix: fast, deterministic on every target. Not resistant
/// to crafted collisions; [`StrIndex`] stays correct under collisions, only slower.
#[derive(Clone, Copy, Default)]
pub(super) struct FxHasher {
    pub(super) hash: u64,
}

pub(super) const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    pub(super) fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        // The last 0–7 bytes as a little-endian word, byte by byte: a copy of a variable
        // length would be a call to `memcpy` per hash (one per event id).
        let word = rest
            .iter()
            .rev()
            .fold(0u64, |word, &byte| (word << 8) | u64::from(byte));
        self.add(word ^ ((rest.len() as u64) << 59));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // murmur3's fmix64, so the low bits used for buckets depend on every input bit.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

pub(super) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The event ids of one aggregation, stored exactly: each id once in one arena as its length
/// (LEB128) and its bytes, indexed by an open-addressing table of (hash, arena offset) with
/// linear probing. Unlike [`StrIndex`] ids need no numbers, so there is no offset array: an id
/// costs its text, one length byte (ids under 128 bytes) and 10–21 bytes of table. With tens of
/// millions of ids this set is most of a rating's memory; the arena grows by a quarter, not
/// double (doubling leaves 44 % of it unused on average, a quarter 12 %).
pub(super) struct IdSet {
    /// At most [`IdSet::MAX_IDS`]; lower in tests.
    pub(super) max_ids: usize,
    pub(super) n_ids: usize,
    pub(super) arena: Vec<u8>,
    /// Entries are arena offsets + 1.
    pub(super) table: Buckets,
}

impl Default for IdSet {
    fn default() -> Self {
        IdSet {
            max_ids: Self::MAX_IDS,
            n_ids: 0,
            arena: Vec::new(),
            table: Buckets::default(),
        }
    }
}

impl IdSet {
    /// As many as [`StrIndex`] numbers.
    pub(super) const MAX_IDS: usize = StrIndex::MAX_STRINGS;
    /// Offsets are 32 bits, + 1 in a bucket.
    pub(super) const MAX_ARENA: usize = u32::MAX as usize - 1;

    /// The id stored at `offset`.
    pub(super) fn id_at(&self, offset: usize) -> Option<&[u8]> {
        let mut len = 0usize;
        let mut at = offset;
        for shift in (0..35).step_by(7) {
            let byte = *self.arena.get(at)?;
            at += 1;
            len |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return self.arena.get(at..at.checked_add(len)?);
            }
        }
        None
    }

    /// The bucket holding `id`, or the empty bucket where it would go.
    pub(super) fn probe(&self, hash: u32, id: &[u8]) -> Result<usize, usize> {
        self.table
            .probe(hash, |entry| self.id_at(entry as usize - 1) == Some(id))
    }

    /// Reads the bucket where a probe for `hash` starts (see [`Aggregator::warm`]).
    pub(super) fn warm(&self, hash: u32) -> u32 {
        self.table.warm(hash)
    }

    #[cfg(test)]
    pub(super) fn contains_hashed(&self, hash: u32, id: &str) -> bool {
        self.find(hash, id).is_ok()
    }

    /// `Ok` if `id` is in the set, else `Err` with the empty bucket where it would go (`None`:
    /// the table is empty), for [`IdSet::insert_vacant`].
    pub(super) fn find(&self, hash: u32, id: &str) -> Result<(), Option<usize>> {
        if self.table.is_empty() {
            return Err(None);
        }
        self.probe(hash, id.as_bytes()).map(|_| ()).map_err(Some)
    }

    /// Whether `id` can be added: it can be counted and its offset addressed.
    pub(super) fn has_room_for(&self, id: &str) -> bool {
        self.n_ids < self.max_ids && self.arena.len() + id.len() + 5 <= Self::MAX_ARENA
    }

    /// Adds `id`, which `contains_hashed(hash, id)` just did not find; false if there is no room.
    #[cfg(test)]
    pub(super) fn insert_new(&mut self, hash: u32, id: &str) -> bool {
        self.insert_vacant(hash, id, None)
    }

    /// Adds `id`, for which [`IdSet::find`] just answered `Err(vacant)` (the set unchanged
    /// since): its bucket is that one unless the table grows, so it is not probed for again.
    /// False if there is no room.
    pub(super) fn insert_vacant(&mut self, hash: u32, id: &str, vacant: Option<usize>) -> bool {
        if !self.has_room_for(id) {
            return false;
        }
        let grown = self.table.reserve_for(self.n_ids + 1);
        let offset = self.arena.len();
        let needed = id.len() + 5;
        if self.arena.capacity() - offset < needed {
            self.arena.reserve_exact((offset / 4).max(needed).max(256));
        }
        // The length in LEB128 (at most 5 bytes: the arena is below 4 GiB), then the bytes.
        let (mut prefix, mut n_prefix, mut len) = ([0u8; 5], 0, id.len());
        while n_prefix < prefix.len() {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                prefix[n_prefix] = byte;
                n_prefix += 1;
                break;
            }
            prefix[n_prefix] = byte | 0x80;
            n_prefix += 1;
        }
        self.arena.extend_from_slice(&prefix[..n_prefix]);
        self.arena.extend_from_slice(id.as_bytes());
        let at = match vacant {
            Some(at) if !grown => at,
            _ => match self.probe(hash, id.as_bytes()) {
                Ok(at) | Err(at) => at,
            },
        };
        // Below MAX_ARENA: fits.
        self.table.set(at, hash, (offset + 1) as u32);
        self.n_ids += 1;
        true
    }
}

/// A set of strings numbered in insertion order, stored exactly in one arena (no allocation per
/// string), indexed by an open-addressing table of (hash, number) with linear probing. A string
/// costs its text, 4 bytes of end offset and 10–21 bytes of table; the text is compared only
/// when the 32-bit hashes are equal. The arena and the offsets grow by a quarter, not double:
/// with tens of millions of event ids they are most of a rating's memory, and doubling leaves
/// on average 44 % of them unused against 12 % (measured at 10 M events: see
/// `docs/benchmarks.md`).
pub(super) struct StrIndex {
    /// At most [`StrIndex::MAX_STRINGS`]; lower in tests.
    pub(super) max_strings: usize,
    pub(super) arena: String,
    /// End of each string in `arena`; string `i` starts where string `i - 1` ends. (32 bits: the
    /// index is full when the arena would pass 4 GiB.)
    pub(super) ends: Vec<u32>,
    /// Entries are string numbers + 1.
    pub(super) table: Buckets,
}

impl Default for StrIndex {
    fn default() -> Self {
        StrIndex {
            max_strings: Self::MAX_STRINGS,
            arena: String::new(),
            ends: Vec::new(),
            table: Buckets::default(),
        }
    }
}

#[derive(Clone, Copy, Default)]
pub(super) struct Bucket {
    pub(super) hash: u32,
    /// What the bucket points at + 1 (a string's number, an id's arena offset); 0: empty.
    pub(super) entry: u32,
}

/// The open-addressing table of [`StrIndex`] and [`IdSet`]: (hash, entry) buckets, linear
/// probing, a power of two long (or empty), kept at most 3/4 full.
#[derive(Default)]
pub(super) struct Buckets(Vec<Bucket>);

impl Buckets {
    /// The bucket whose entry `is_it` accepts among those of `hash`, or the empty bucket where
    /// it would go. (Empty table: `Err(0)`, to be grown before use.)
    pub(super) fn probe(&self, hash: u32, is_it: impl Fn(u32) -> bool) -> Result<usize, usize> {
        let mask = self.0.len().wrapping_sub(1);
        let mut at = (hash as usize) & mask;
        loop {
            let Some(bucket) = self.0.get(at) else {
                return Err(at);
            };
            if bucket.entry == 0 {
                return Err(at);
            }
            if bucket.hash == hash && is_it(bucket.entry) {
                return Ok(at);
            }
            at = (at + 1) & mask;
        }
    }

    /// Reads the bucket where a probe for `hash` starts (see [`Aggregator::warm`]).
    pub(super) fn warm(&self, hash: u32) -> u32 {
        let mask = self.0.len().wrapping_sub(1);
        self.0
            .get((hash as usize) & mask)
            .map_or(0, |bucket| bucket.entry)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn entry(&self, at: usize) -> u32 {
        self.0[at].entry
    }

    /// Makes room for the `n`-th entry (doubling past 3/4 full); true if the table grew (its
    /// buckets moved).
    pub(super) fn reserve_for(&mut self, n: usize) -> bool {
        if n * 4 <= self.0.len() * 3 {
            return false;
        }
        let capacity = (self.0.len() * 2).max(16);
        let old = std::mem::replace(&mut self.0, vec![Bucket::default(); capacity]);
        let mask = capacity - 1;
        for bucket in old.into_iter().filter(|b| b.entry != 0) {
            let mut at = (bucket.hash as usize) & mask;
            while self.0[at].entry != 0 {
                at = (at + 1) & mask;
            }
            self.0[at] = bucket;
        }
        true
    }

    /// Puts `entry` in the empty bucket `at` that a probe for `hash` returned.
    pub(super) fn set(&mut self, at: usize, hash: u32, entry: u32) {
        self.0[at] = Bucket { hash, entry };
    }
}

impl StrIndex {
    /// Strings are numbered in 32 bits (buckets are 8 bytes: the index is bound by cache
    /// misses); 4,294,967,294 distinct ids in one aggregation is far beyond any memory.
    pub(super) const MAX_STRINGS: usize = u32::MAX as usize - 1;

    /// The high half of the Fx hash (the better mixed one).
    pub(super) fn hash(text: &str) -> u32 {
        let mut hasher = FxHasher::default();
        hasher.write(text.as_bytes());
        (hasher.finish() >> 32) as u32
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn text(&self, idx: usize) -> Option<&str> {
        let start = match idx.checked_sub(1) {
            Some(previous) => *self.ends.get(previous)? as usize,
            None => 0,
        };
        self.arena.get(start..*self.ends.get(idx)? as usize)
    }

    /// The bucket holding `text`, or the empty bucket where it would go.
    pub(super) fn probe(&self, hash: u32, text: &str) -> Result<usize, usize> {
        self.table
            .probe(hash, |entry| self.text(entry as usize - 1) == Some(text))
    }

    pub(super) fn find_hashed(&self, hash: u32, text: &str) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        self.probe(hash, text)
            .ok()
            .map(|at| self.table.entry(at) as usize - 1)
    }

    /// The index of `text`, if present. A few strings (a metric's groups, usually) are compared
    /// one by one, lengths first: cheaper than hashing the text and reading its bucket.
    pub(super) fn find(&self, text: &str) -> Option<usize> {
        if self.ends.len() > Self::MAX_SCANNED {
            return self.find_hashed(Self::hash(text), text);
        }
        let mut start = 0;
        for (idx, &end) in self.ends.iter().enumerate() {
            let end = end as usize;
            if end.saturating_sub(start) == text.len()
                && self.arena.as_bytes().get(start..end) == Some(text.as_bytes())
            {
                return Some(idx);
            }
            start = end;
        }
        None
    }

    /// Up to this many strings, [`StrIndex::find`] scans them.
    const MAX_SCANNED: usize = 8;

    /// The index of `text`, inserted if new; `None` if new and the index is full.
    pub(super) fn insert(&mut self, text: &str) -> Option<usize> {
        let hash = Self::hash(text);
        match self.find_hashed(hash, text) {
            Some(idx) => Some(idx),
            None => self.insert_new(hash, text),
        }
    }

    /// Whether the index holds as many strings as its buckets can number.
    pub(super) fn is_full(&self) -> bool {
        self.ends.len() >= self.max_strings
    }

    /// Whether `text` can be inserted: a string can be numbered and its offset addressed.
    pub(super) fn has_room_for(&self, text: &str) -> bool {
        !self.is_full() && self.arena.len() + text.len() <= Self::MAX_ARENA
    }

    /// Bytes of text an index holds at most: offsets are 32 bits.
    pub(super) const MAX_ARENA: usize = u32::MAX as usize;

    /// Inserts `text`, which `find_hashed(hash, text)` just did not find (`None`: full).
    pub(super) fn insert_new(&mut self, hash: u32, text: &str) -> Option<usize> {
        if !self.has_room_for(text) {
            return None;
        }
        let _ = self.table.reserve_for(self.ends.len() + 1);
        let idx = self.ends.len();
        if self.arena.capacity() - self.arena.len() < text.len() {
            self.arena
                .reserve_exact((self.arena.len() / 4).max(text.len()).max(256));
        }
        if self.ends.capacity() == self.ends.len() {
            self.ends.reserve_exact((self.ends.len() / 4).max(16));
        }
        self.arena.push_str(text);
        // At most MAX_ARENA: fits.
        self.ends.push(self.arena.len() as u32);
        let at = match self.probe(hash, text) {
            Ok(at) | Err(at) => at,
        };
        // At most MAX_STRINGS: fits.
        self.table.set(at, hash, (idx + 1) as u32);
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_index_refuses_new_strings() {
        let mut index = StrIndex {
            max_strings: 2,
            ..StrIndex::default()
        };
        assert_eq!(index.insert("a"), Some(0));
        assert_eq!(index.insert("b"), Some(1));
        assert_eq!(index.insert("c"), None);
        assert_eq!(index.insert("a"), Some(0));
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn id_set_is_exact_under_collisions_and_long_ids() {
        let mut ids = IdSet::default();
        let long = "x".repeat(300); // a two-byte length
        let texts = ["a", "b", "", "ab", long.as_str(), "é"];
        // Every id with the same hash: one probe run, told apart by their text.
        for text in texts {
            assert!(!ids.contains_hashed(7, text));
            assert!(ids.insert_new(7, text));
        }
        for text in texts {
            assert!(ids.contains_hashed(7, text), "{text:?}");
        }
        assert!(!ids.contains_hashed(7, &"x".repeat(299)));
        assert!(!ids.contains_hashed(8, "a"));
        for i in 0..5_000 {
            let id = format!("evt_{i:016}");
            assert!(ids.insert_new(StrIndex::hash(&id), &id));
        }
        for i in 0..5_000 {
            let id = format!("evt_{i:016}");
            assert!(ids.contains_hashed(StrIndex::hash(&id), &id));
        }
        assert_eq!(ids.n_ids, 5_006);
        for text in texts {
            assert!(ids.contains_hashed(7, text), "after growing: {text:?}");
        }
        // Grown by a quarter, not doubled.
        assert!(
            ids.arena.capacity() < ids.arena.len() * 5 / 4 + 512,
            "{}",
            ids.arena.capacity()
        );
        let mut full = IdSet {
            max_ids: 1,
            ..IdSet::default()
        };
        assert!(full.insert_new(1, "a"));
        assert!(!full.has_room_for("b"));
        assert!(!full.insert_new(2, "b"));
        assert!(full.contains_hashed(1, "a"));
    }

    /// The tail of a hashed text is read as the little-endian word its bytes pad to.
    #[test]
    fn the_hash_reads_the_tail_as_a_padded_word() {
        for len in 0..40 {
            let text: String = (0..len)
                .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
                .collect();
            let mut want = FxHasher::default();
            let mut chunks = text.as_bytes().chunks(8).peekable();
            if len % 8 == 0 {
                for chunk in chunks.by_ref() {
                    want.add(u64::from_le_bytes(chunk.try_into().unwrap()));
                }
                want.add(0);
            } else {
                while let Some(chunk) = chunks.next() {
                    let mut word = [0u8; 8];
                    word[..chunk.len()].copy_from_slice(chunk);
                    let word = u64::from_le_bytes(word);
                    if chunks.peek().is_some() {
                        want.add(word);
                    } else {
                        want.add(word ^ ((chunk.len() as u64) << 59));
                    }
                }
            }
            let mut got = FxHasher::default();
            got.write(text.as_bytes());
            assert_eq!(got.finish(), want.finish(), "{text:?}");
        }
    }

    /// Inserting at the bucket `find` returned builds the very table a fresh probe builds,
    /// through collisions and growth.
    #[test]
    fn insert_vacant_is_insert_new() {
        let (mut probed, mut placed) = (IdSet::default(), IdSet::default());
        for i in 0..3_000u32 {
            let id = format!("e{}", i % 2_500);
            // Few distinct hashes: long probe runs.
            let hash = if i % 3 == 0 { 7 } else { StrIndex::hash(&id) };
            if !probed.contains_hashed(hash, &id) {
                assert!(probed.insert_new(hash, &id));
            }
            if let Err(vacant) = placed.find(hash, &id) {
                assert!(placed.insert_vacant(hash, &id, vacant));
            }
        }
        let buckets = |set: &IdSet| -> Vec<(u32, u32)> {
            set.table.0.iter().map(|b| (b.hash, b.entry)).collect()
        };
        assert_eq!(buckets(&probed), buckets(&placed));
        assert_eq!(probed.arena, placed.arena);
        assert_eq!(probed.n_ids, placed.n_ids);
    }

    /// `find` scans a few strings and hashes many: the same answers either way.
    #[test]
    fn find_scans_few_strings_and_hashes_many() {
        let mut index = StrIndex::default();
        let texts: Vec<String> = ["", "a", "ab", "b", "1:a", "1:b", "2:ab"]
            .iter()
            .map(|t| (*t).to_owned())
            .chain((0..20).map(|i| format!("g{i}")))
            .collect();
        for (n, text) in texts.iter().enumerate() {
            for (i, known) in texts.iter().enumerate() {
                let want = (i < n).then_some(i);
                assert_eq!(index.find(known), want, "{n} strings, {known:?}");
                assert_eq!(
                    index.find(known),
                    index.find_hashed(StrIndex::hash(known), known)
                );
            }
            assert_eq!(index.insert(text), Some(n));
        }
        assert_eq!(index.find("absent"), None);
    }

    #[test]
    fn str_index_survives_hash_collisions() {
        let mut index = StrIndex::default();
        // Every string with the same hash: one probe run.
        for (i, text) in ["a", "b", "", "ab"].iter().enumerate() {
            assert_eq!(index.find_hashed(7, text), None);
            assert_eq!(index.insert_new(7, text), Some(i));
        }
        assert_eq!(index.find_hashed(7, "b"), Some(1));
        assert_eq!(index.find_hashed(7, ""), Some(2));
        assert_eq!(index.find_hashed(7, "abc"), None);
        assert_eq!(index.insert("ab"), Some(4));
        assert_eq!(index.insert("ab"), Some(4));
        assert_eq!(index.len(), 5);
        // Growing keeps every string findable, colliding or not.
        for i in 0..1000 {
            assert_eq!(index.insert(&format!("id-{i}")), Some(5 + i));
        }
        for i in 0..1000 {
            assert_eq!(index.insert(&format!("id-{i}")), Some(5 + i));
        }
        assert_eq!(index.find_hashed(7, "a"), Some(0));
        assert_eq!(index.find_hashed(7, "ab"), Some(3));
        assert_eq!(index.insert("ab"), Some(4));
        assert_eq!(index.text(2), Some(""));
        assert_eq!(index.len(), 1005);
    }
}
