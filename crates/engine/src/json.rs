//! Reading Ratecard's JSON documents (plans, usage) with every error named by its JSON path, all
//! of them at once: a person fixing a plan sees each bad value in one run, as `validate` lists
//! every semantic error.
//!
//! The document is first read as it always is (one pass, borrowed, no path tracking: the fast
//! path). Only when that fails is it read again, tracking paths, for the first error's path,
//! and then as a tree, repeatedly: each error is noted with its path, the
//! offending value is taken out of the tree, and reading goes on, until the rest reads. An error
//! that only follows from a value taken out (the `missing field` it leaves behind) is not noted;
//! array elements taken out keep the paths of the elements after them in the original document.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// One thing wrong in a JSON document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// JSON path of the offending value: `$.charges[2].model.tiers[0].unit_price`; `$` for the
    /// document as a whole.
    pub path: String,
    /// 1-based line and column, when known (the first error and syntax errors).
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

/// At most this many errors are collected from one document.
pub const MAX_ERRORS: usize = 100;

/// Reads `text` as a `T`, or returns every error found (at most [`MAX_ERRORS`]), in document order
/// of discovery, each with its JSON path.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, Vec<ParseError>> {
    // The fast path reads the text once, tracking no path: a good document pays nothing for
    // the paths of errors it does not have.
    let mut deserializer = serde_json::Deserializer::from_str(text);
    if let Ok(value) = T::deserialize(&mut deserializer)
        && deserializer.end().is_ok()
    {
        return Ok(value);
    }
    parse_tracking::<T>(text)
}

/// [`parse`] with paths tracked from the start: the same result, in one instantiation of `T`'s
/// deserializer instead of two (a document read once, such as a plan a browser prepares, is
/// not worth the code of a second one). When reading fails, it is also the second read of
/// [`parse`]: the first error is the one the fast path met, at the same place in the text.
#[cold]
pub fn parse_tracking<T: DeserializeOwned>(text: &str) -> Result<T, Vec<ParseError>> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let first = match read_tracked::<T>(&mut deserializer) {
        Ok(value) => match deserializer.end() {
            Ok(()) => return Ok(value),
            // Something after the document.
            Err(error) => {
                return Err(vec![ParseError {
                    path: "$".to_owned(),
                    line: Some(error.line()),
                    column: Some(error.column()),
                    message: message(&error),
                }]);
            }
        },
        Err(error) => error,
    };
    let path = json_path(first.path());
    let inner = first.into_inner();
    let first = ParseError {
        path,
        line: Some(inner.line()),
        column: Some(inner.column()),
        message: message(&inner),
    };
    if inner.is_syntax() || inner.is_eof() || inner.is_io() {
        return Err(vec![first]);
    }
    let Ok(mut tree) = serde_json::from_str::<Value>(text) else {
        return Err(vec![first]);
    };
    let mut first = first;
    let refined = refine::<T>(&tree, segments_of(&first.path), &first.message);
    first.path = render(&refined);
    Err(collect::<T>(&mut tree, first))
}

/// The one reader of `T` that tracks paths: over JSON text, so that the first read (where the
/// error's line and column come from) and every later read of a tree share it.
fn read_tracked<T: DeserializeOwned>(
    deserializer: &mut serde_json::Deserializer<serde_json::de::StrRead<'_>>,
) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
    serde_path_to_error::deserialize::<_, T>(deserializer)
}

/// Reads a tree as `T`, tracking paths: through its text and [`read_tracked`], not as a
/// `Value` (a second instantiation of every `Deserialize` of the document, ~20 % of the browser
/// package). The text of a tree reads as the tree does: the same keys in the same order, the
/// same numbers (serde_json writes an `f64` so that it reads back the same), strings unescaped.
/// One error differs, and is given as the tree gives it: an enum (`"mode": "up"`) that is
/// neither a string nor an object of one member is `expected value` in text, a syntax error
/// (the text of a tree has none otherwise), and `invalid type: …, expected string or map` (or
/// `invalid value: map, expected map with a single key`) in a tree.
fn read_tree<T: DeserializeOwned>(
    tree: &Value,
) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
    let text = tree.to_string();
    let error = match read_tracked::<T>(&mut serde_json::Deserializer::from_str(&text)) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
    if !error.inner().is_syntax() {
        return Err(error);
    }
    let segments: Vec<Segment> = error.path().iter().map(Segment::from).collect();
    let as_tree = value_at(tree, &segments).and_then(|node| {
        serde::Deserializer::deserialize_enum(node, "", &[], serde::de::IgnoredAny).err()
    });
    match as_tree {
        Some(inner) => Err(serde_path_to_error::Error::new(error.path().clone(), inner)),
        None => Err(error),
    }
}

/// Serde reads an internally tagged enum (a price model, an aggregation: `{"type": ...}`)
/// from a buffer, so an error inside one is reported at the enum, not at the value. Narrow
/// `path` down: the member of the object (or element of the array) there whose removal alone
/// changes the error is the one at fault; repeat inside it. The tag itself is never blamed
/// unless it is all there is, nor a member for a missing field (the object is at fault).
fn refine<T: DeserializeOwned>(tree: &Value, path: Vec<Segment>, message: &str) -> Vec<Segment> {
    const MAX_DEPTH: usize = 8;
    if message.starts_with("missing field") {
        return path;
    }
    let reported = path.clone();
    let mut path = path;
    for _ in 0..MAX_DEPTH {
        let Some(value) = value_at(tree, &path) else {
            break;
        };
        let members: Vec<Segment> = match value {
            Value::Object(map) if map.len() > 1 => map
                .keys()
                .filter(|key| key.as_str() != "type")
                .map(|key| Segment::Key(key.clone()))
                .collect(),
            Value::Array(items) if items.len() > 1 => {
                (0..items.len()).map(Segment::Index).collect()
            }
            _ => break,
        };
        let at_fault: Vec<&Segment> = members
            .iter()
            .filter(|member| {
                let mut trial = tree.clone();
                let Some(parent) = value_at_mut(&mut trial, &path) else {
                    return false;
                };
                match (parent, member) {
                    (Value::Object(map), Segment::Key(key)) => drop(map.remove(key)),
                    (Value::Array(items), Segment::Index(idx)) => drop(items.remove(*idx)),
                    _ => return false,
                }
                match read_tree::<T>(&trial) {
                    Ok(_) => true,
                    Err(error) => {
                        let at: Vec<Segment> = error.path().iter().map(Segment::from).collect();
                        at != reported || self::message(error.inner()) != message
                    }
                }
            })
            .collect();
        match at_fault.as_slice() {
            [member] => path.push((*member).clone()),
            _ => break,
        }
    }
    path
}

fn value_at<'v>(tree: &'v Value, path: &[Segment]) -> Option<&'v Value> {
    path.iter().try_fold(tree, |value, segment| match segment {
        Segment::Key(key) => value.get(key.as_str()),
        Segment::Index(idx) => value.get(*idx),
    })
}

fn value_at_mut<'v>(tree: &'v mut Value, path: &[Segment]) -> Option<&'v mut Value> {
    path.iter().try_fold(tree, |value, segment| match segment {
        Segment::Key(key) => value.get_mut(key.as_str()),
        Segment::Index(idx) => value.get_mut(*idx),
    })
}

/// Reads the tree again and again, taking out each offending value.
fn collect<T: DeserializeOwned>(tree: &mut Value, first: ParseError) -> Vec<ParseError> {
    let mut errors = vec![first];
    let mut removed = Removed::default();
    // The first error's path is in the original document (nothing is removed yet).
    let mut next = segments_of(&errors[0].path);
    for _ in 0..MAX_ERRORS * 4 {
        // Take out the value at `next` (original coordinates), or its nearest existing ancestor.
        if next.is_empty() || !removed.take_out(tree, &next) {
            break;
        }
        let error = match read_tree::<T>(tree) {
            Ok(_) => break,
            Err(error) => error,
        };
        let message = message(error.inner());
        let current: Vec<Segment> = error.path().iter().map(Segment::from).collect();
        let current = refine::<T>(tree, current, &message);
        let original = removed.original(&current);
        // A consequence of a value taken out: the same place, or a place holding one.
        let consequence = errors
            .iter()
            .any(|e| is_prefix(&original, &segments_of(&e.path)));
        if !consequence {
            if errors.len() == MAX_ERRORS {
                break;
            }
            errors.push(ParseError {
                path: render(&original),
                line: None,
                column: None,
                message,
            });
        }
        next = original;
    }
    errors
}

/// A step of a JSON path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Segment {
    Key(String),
    Index(usize),
}

impl From<&serde_path_to_error::Segment> for Segment {
    fn from(segment: &serde_path_to_error::Segment) -> Self {
        match segment {
            serde_path_to_error::Segment::Seq { index } => Segment::Index(*index),
            serde_path_to_error::Segment::Map { key } => Segment::Key(key.clone()),
            serde_path_to_error::Segment::Enum { variant } => Segment::Key(variant.clone()),
            serde_path_to_error::Segment::Unknown => Segment::Key("?".to_owned()),
        }
    }
}

fn is_prefix(prefix: &[Segment], path: &[Segment]) -> bool {
    prefix.len() <= path.len() && prefix == &path[..prefix.len()]
}

/// `$.a.b[2].c`, or `$` for the root.
fn render(path: &[Segment]) -> String {
    let mut text = String::from("$");
    for segment in path {
        match segment {
            Segment::Key(key) => {
                text.push('.');
                text.push_str(key);
            }
            Segment::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    text
}

fn json_path(path: &serde_path_to_error::Path) -> String {
    let segments: Vec<Segment> = path.iter().map(Segment::from).collect();
    render(&segments)
}

/// Parses a path [`render`] wrote back into segments (keys are the document's, without dots or
/// brackets in the documents Ratecard reads; a key with them is kept whole up to the next one).
fn segments_of(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let rest = path.strip_prefix('$').unwrap_or(path);
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut key = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '[' {
                        break;
                    }
                    key.push(c);
                    chars.next();
                }
                segments.push(Segment::Key(key));
            }
            '[' => {
                let mut digits = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    digits.push(c);
                }
                match digits.parse() {
                    Ok(i) => segments.push(Segment::Index(i)),
                    Err(_) => segments.push(Segment::Key(digits)),
                }
            }
            _ => {}
        }
    }
    segments
}

/// The array elements taken out of the tree so far, by the array's original path: so paths
/// of the current tree can be turned back into the document's.
#[derive(Debug, Default)]
struct Removed(BTreeMap<Vec<Segment>, Vec<usize>>);

impl Removed {
    /// The original path of a path in the current tree.
    fn original(&self, current: &[Segment]) -> Vec<Segment> {
        let mut original = Vec::with_capacity(current.len());
        for segment in current {
            let segment = match (segment, self.0.get(&original)) {
                (Segment::Index(i), Some(gone)) => Segment::Index(nth_kept(gone, *i)),
                _ => segment.clone(),
            };
            original.push(segment);
        }
        original
    }

    /// The current index of an original index of the array at `array` (None if taken out).
    fn current_index(&self, array: &[Segment], original: usize) -> Option<usize> {
        match self.0.get(array) {
            None => Some(original),
            Some(gone) if gone.contains(&original) => None,
            Some(gone) => Some(original - gone.iter().filter(|g| **g < original).count()),
        }
    }

    /// Takes the value at `path` (original coordinates) out of `tree`; when it is not there
    /// (a `missing field` names its parent, or an element already gone), its parent. Returns
    /// false when nothing is left to take out (the root).
    fn take_out(&mut self, tree: &mut Value, path: &[Segment]) -> bool {
        let mut path = path.to_vec();
        loop {
            let Some((last, parent)) = path.split_last() else {
                return false;
            };
            let (last, parent) = (last.clone(), parent.to_vec());
            if let Some(node) = self.node(tree, &parent) {
                match (node, &last) {
                    (Value::Object(map), Segment::Key(key)) if map.contains_key(key) => {
                        map.remove(key);
                        return true;
                    }
                    (Value::Array(items), Segment::Index(i)) => {
                        if let Some(current) = self.current_index(&parent, *i)
                            && current < items.len()
                        {
                            items.remove(current);
                            let gone = self.0.entry(parent).or_default();
                            gone.push(*i);
                            gone.sort_unstable();
                            return true;
                        }
                    }
                    _ => {}
                }
            }
            path.pop();
        }
    }

    /// The node at an original path in the current tree.
    fn node<'t>(&self, tree: &'t mut Value, path: &[Segment]) -> Option<&'t mut Value> {
        let mut node = tree;
        for (depth, segment) in path.iter().enumerate() {
            node = match (node, segment) {
                (Value::Object(map), Segment::Key(key)) => map.get_mut(key)?,
                (Value::Array(items), Segment::Index(i)) => {
                    let current = self.current_index(&path[..depth], *i)?;
                    items.get_mut(current)?
                }
                _ => return None,
            };
        }
        Some(node)
    }
}

/// The original index of the `i`-th element kept, given the original indices taken out (sorted).
fn nth_kept(gone: &[usize], i: usize) -> usize {
    let mut original = i;
    for g in gone {
        if *g <= original {
            original += 1;
        } else {
            break;
        }
    }
    original
}

/// serde_json's message without its `at line 1 column 5` (the position is kept apart).
fn message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) if error.line() > 0 => text[..at].to_owned(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;
    use crate::usage::Usage;

    fn errors(text: &str) -> Vec<String> {
        parse::<Plan>(text)
            .unwrap_err()
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    /// Every document of `examples/` with one value changed (to each JSON type) or taken out.
    fn mutations(documents: &[&str]) -> Vec<Value> {
        fn paths(value: &Value, at: &mut Vec<Segment>, out: &mut Vec<Vec<Segment>>) {
            out.push(at.clone());
            match value {
                Value::Object(map) => map.iter().for_each(|(key, value)| {
                    at.push(Segment::Key(key.clone()));
                    paths(value, at, out);
                    at.pop();
                }),
                Value::Array(items) => items.iter().enumerate().for_each(|(idx, value)| {
                    at.push(Segment::Index(idx));
                    paths(value, at, out);
                    at.pop();
                }),
                _ => {}
            }
        }
        let replacements: Vec<Value> = serde_json::from_str(
            r#"[null, true, 7, -3, 1.5, 1e300, 18446744073709551616, "x", "2026-13-01", "-1", [], [1], {}, {"type": "flat"}]"#,
        )
        .unwrap();
        let mut out = Vec::new();
        for text in documents {
            let tree: Value = serde_json::from_str(text).unwrap();
            let mut all = Vec::new();
            paths(&tree, &mut Vec::new(), &mut all);
            for path in all {
                for replacement in &replacements {
                    let mut changed = tree.clone();
                    *value_at_mut(&mut changed, &path).unwrap() = replacement.clone();
                    out.push(changed);
                }
                let mut removed = Removed::default();
                let mut changed = tree.clone();
                if removed.take_out(&mut changed, &path) {
                    out.push(changed);
                }
            }
        }
        out
    }

    /// The error of reading `tree` as a `T`, as `collect` sees it: its path and message.
    fn outcome<T: DeserializeOwned>(
        read: Result<T, serde_path_to_error::Error<serde_json::Error>>,
    ) -> Option<(String, String)> {
        read.err()
            .map(|error| (json_path(error.path()), message(error.inner())))
    }

    #[test]
    fn a_tree_reads_through_its_text_as_it_reads_as_a_tree() {
        let plans = [
            include_str!("../../../examples/plans/cloud-storage.json"),
            include_str!("../../../examples/plans/fleet-mileage.json"),
            include_str!("../../../examples/plans/ott-ppv.json"),
            include_str!("../../../examples/plans/saas-api.json"),
            include_str!("../../../examples/plans/utility-tiers.json"),
        ];
        let usages = [
            include_str!("../../../examples/usage/cloud-storage.json"),
            include_str!("../../../examples/usage/fleet-mileage.json"),
            include_str!("../../../examples/usage/ott-ppv.json"),
            include_str!("../../../examples/usage/saas-api.json"),
            include_str!("../../../examples/usage/utility-tiers.json"),
        ];
        let (mut n_trees, mut n_errors) = (0, 0);
        for tree in mutations(&plans) {
            let as_tree = outcome(serde_path_to_error::deserialize::<_, Plan>(&tree));
            assert_eq!(outcome(read_tree::<Plan>(&tree)), as_tree, "{tree}");
            n_trees += 1;
            n_errors += usize::from(as_tree.is_some());
        }
        for tree in mutations(&usages) {
            let as_tree = outcome(serde_path_to_error::deserialize::<_, Usage>(&tree));
            assert_eq!(outcome(read_tree::<Usage>(&tree)), as_tree, "{tree}");
            n_trees += 1;
            n_errors += usize::from(as_tree.is_some());
        }
        assert!(
            n_trees > 1000 && n_errors > n_trees / 2,
            "{n_trees} {n_errors}"
        );
    }

    #[test]
    fn every_bad_value_is_named_with_its_path() {
        let text = r#"{"id": "p", "currency": "USD", "trial_days": -3,
            "charges": [
                {"id": "a", "model": {"type": "per_unit", "unit_price": "abc"}},
                {"id": "b", "model": {"type": "per_unit", "unit_price": "1"}},
                {"id": "c", "model": {"type": "flat", "amount": "1.2.3"}},
                {"model": {"type": "flat", "amount": "1"}}
            ],
            "minimum_commitment": "ten"}"#;
        let found = errors(text);
        // (A model is tagged by its `type`: serde names the model, and `refine` its field.)
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(
            found[0].starts_with("$.trial_days: invalid value: integer `-3`"),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|e| e.starts_with("$.charges[0].model.unit_price: `abc` is not a decimal")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|e| e.starts_with("$.charges[2].model.amount: `1.2.3`")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|e| e == "$.charges[3]: missing field `id`"),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|e| e.starts_with("$.minimum_commitment: `ten`")),
            "{found:#?}"
        );
        // Inside tiers too, and a lone bad member of a tagged enum is named even when removing
        // it leaves a required field missing.
        let nested = errors(
            r#"{"id": "p", "currency": "USD", "metrics": [{"code": "m", "aggregation": {"type": "sum", "property": 7}}],
            "charges": [{"id": "g", "metric": "m", "model": {"type": "graduated", "tiers": [
                {"up_to": "10", "unit_price": "1"}, {"up_to": null, "unit_price": "x"}]}}]}"#,
        );
        assert_eq!(
            nested,
            [
                "$.metrics[0].aggregation.property: invalid type: integer `7`, expected a string",
                "$.charges[0].model.tiers[1].unit_price: `x` is not a decimal number"
            ],
            "{nested:#?}"
        );
        // The first carries its place in the text.
        let first = &parse::<Plan>(text).unwrap_err()[0];
        assert_eq!(first.line, Some(1));
    }

    #[test]
    fn a_syntax_error_is_one_error_with_its_line() {
        let found = parse::<Plan>("{\"id\": \"p\",\n \"currency\": }").unwrap_err();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].line, found[0].column), (Some(2), Some(14)));
        assert!(
            found[0].to_string().contains("(line 2, column 14)"),
            "{}",
            found[0]
        );
        let found = parse::<Plan>("").unwrap_err();
        assert_eq!(found.len(), 1);
        let found = parse::<Plan>(r#"{"id": "p", "currency": "USD"} x"#).unwrap_err();
        assert_eq!(found[0].path, "$");
        assert!(
            found[0].message.contains("trailing characters"),
            "{:?}",
            found[0]
        );
    }

    #[test]
    fn a_good_document_reads_as_before() {
        let plan: Plan = parse(r#"{"id": "p", "currency": "USD"}"#).unwrap();
        assert_eq!(plan.id, "p");
    }

    #[test]
    fn paths_of_elements_after_one_taken_out_stay_the_documents() {
        let removed = Removed(BTreeMap::from([(
            vec![Segment::Key("c".into())],
            vec![0, 2],
        )]));
        let current = [Segment::Key("c".into()), Segment::Index(1)];
        assert_eq!(
            removed.original(&current),
            [Segment::Key("c".into()), Segment::Index(3)]
        );
        assert_eq!(nth_kept(&[0, 2], 0), 1);
        assert_eq!(nth_kept(&[1], 0), 0);
        assert_eq!(
            segments_of("$.a[2].b"),
            [
                Segment::Key("a".into()),
                Segment::Index(2),
                Segment::Key("b".into())
            ]
        );
        assert_eq!(render(&segments_of("$.a[2].b")), "$.a[2].b");
    }
}
