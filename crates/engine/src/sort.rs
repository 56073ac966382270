//! One stable sort for the engine's sorts, and maps built by insertion.
//!
//! std's `sort_by` (driftsort) is ~4 KB of code for each element type and comparison, and
//! `collect` into a `BTreeMap` sorts too: a dozen of them were ~10 % of the browser package's
//! code. [`sort_by`] sorts indices instead (one instantiation of std's sort, for `usize`, with the
//! comparison behind a `dyn`) and then moves the elements into place, or, for a few elements,
//! sorts by insertion; [`map_of`] and
//! [`set_of`] insert.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// Up to this many elements are sorted by insertion (no allocation).
const MAX_INSERTION: usize = 16;

/// Sorts `items` as `items.sort_by(compare)` does: stable (equal elements keep their order).
pub(crate) fn sort_by<T>(items: &mut [T], mut compare: impl FnMut(&T, &T) -> Ordering) {
    if items.is_sorted_by(|a, b| compare(a, b) != Ordering::Greater) {
        return;
    }
    if items.len() <= MAX_INSERTION {
        // A few elements (an event's properties): by insertion, in place.
        for end in 1..items.len() {
            let mut at = end;
            while at > 0 && compare(&items[at - 1], &items[at]) == Ordering::Greater {
                items.swap(at - 1, at);
                at -= 1;
            }
        }
        return;
    }
    let mut order = order(items.len(), &mut |a, b| compare(&items[a], &items[b]));
    // `order[i]` is the index of the element that goes to `i`: follow each cycle once.
    for start in 0..order.len() {
        let mut at = start;
        while order[at] != at {
            let from = order[at];
            order[at] = at;
            if from == start {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

/// The indices `0..len` in the order `compare` sorts them, stably.
fn order(len: usize, compare: &mut dyn FnMut(usize, usize) -> Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_by(|&a, &b| compare(a, b));
    order
}

/// `pairs.collect::<BTreeMap<_, _>>()`, inserted one by one: for equal keys the last value
/// wins, as `collect` has it.
pub(crate) fn map_of<K: Ord, V>(pairs: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, V> {
    let mut map = BTreeMap::new();
    for (key, value) in pairs {
        map.insert(key, value);
    }
    map
}

/// `items.iter().collect::<BTreeSet<_>>()`, inserted one by one.
pub(crate) fn set_of<T: Ord>(items: &[T]) -> BTreeSet<&T> {
    let mut set = BTreeSet::new();
    for item in items {
        set.insert(item);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sorts_as_std_sorts(items in proptest::collection::vec((0u8..8, any::<u16>()), 0..200)) {
            // Short and long (insertion and indices).
            let mut ours = items.clone();
            sort_by(&mut ours, |a, b| a.0.cmp(&b.0));
            let mut std = items.clone();
            std.sort_by_key(|a| a.0);
            prop_assert_eq!(ours, std);
        }

        #[test]
        fn maps_as_collect_maps(pairs in proptest::collection::vec((0u8..16, any::<u16>()), 0..100)) {
            let collected: BTreeMap<u8, u16> = pairs.iter().copied().collect();
            prop_assert_eq!(map_of(pairs), collected);
        }
    }
}
