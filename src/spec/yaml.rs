//! A small owned YAML tree that remembers where every node came from, and a
//! reader over it that turns shape errors into positioned diagnostics.
//!
//! saphyr parses the text (with duplicate keys rejected); this module copies its
//! marked tree into [`Node`]s so the rest of the spec code works with plain owned
//! values and never with the parser's lifetimes.

#![allow(clippy::result_large_err)] // Diagnostics are cold-path values; boxing them buys nothing.

use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::diag::{Diagnostic, Diagnostics, Pos, Severity, did_you_mean};

/// A YAML value with the position of its first character.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    /// How many characters of the source line the node covers on its first line.
    pub width: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; keys are nodes so that errors can point at them.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// What the value is, in the words an error message uses.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A source file held in memory for positions and source lines.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Source { path: path.into(), text: text.into() }
    }

    pub fn line(&self, line: usize) -> Option<&str> {
        self.text.lines().nth(line.checked_sub(1)?)
    }

    /// Makes a diagnostic pointing at `pos` in this file.
    pub fn diagnostic(&self, severity: Severity, pos: Pos, width: usize, title: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity,
            title: title.into(),
            file: self.path.clone(),
            pos: Some(pos),
            width: width.max(1),
            source_line: self.line(pos.line).map(str::to_owned),
            hint: None,
        }
    }
}

/// Parses `source` as one YAML document. An empty file is an empty mapping's
/// absence: `Ok(None)`.
pub fn parse(source: &Source) -> Result<Option<Node>, Diagnostic> {
    let docs = MarkedYaml::load_from_str(&source.text).map_err(|e| {
        let m = e.marker();
        let pos = Pos { line: m.line().max(1), col: m.col() + 1 };
        source.diagnostic(Severity::Error, pos, 1, format!("this is not valid YAML: {}", e.info()))
    })?;
    let mut docs = docs.into_iter();
    let first = docs.next();
    if let Some(extra) = docs.next() {
        let pos = Pos { line: extra.span.start.line().max(1), ..to_pos(&extra) };
        return Err(source
            .diagnostic(Severity::Error, pos, 3, "more than one YAML document in this file")
            .with_hint("put each journey in a file of its own"));
    }
    match first {
        None => Ok(None),
        Some(doc) => convert(source, &doc, Pos { line: 1, col: 1 }).map(Some),
    }
}

fn to_pos(node: &MarkedYaml<'_>) -> Pos {
    Pos { line: node.span.start.line(), col: node.span.start.col() + 1 }
}

/// Converts `node`; `outer` is the position of the node it is in, used where the
/// YAML parser has none for this one (it gives an implicit null, e.g. after a
/// lone tag `!`, line 0).
fn convert(source: &Source, node: &MarkedYaml<'_>, outer: Pos) -> Result<Node, Diagnostic> {
    let pos = if node.span.start.line() == 0 { outer } else { to_pos(node) };
    let width = if node.span.end.line() == node.span.start.line() {
        node.span.end.col().saturating_sub(node.span.start.col())
    } else {
        1
    };
    let value = match &node.data {
        YamlData::Value(scalar) => match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::Int(*i),
            Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
            Scalar::String(s) => Value::Str(s.to_string()),
        },
        YamlData::Representation(text, _, _) => Value::Str(text.to_string()),
        YamlData::Sequence(items) => {
            Value::Seq(items.iter().map(|item| convert(source, item, pos)).collect::<Result<_, _>>()?)
        }
        YamlData::Mapping(map) => Value::Map(
            map.iter()
                .map(|(k, v)| {
                    let key = convert(source, k, pos)?;
                    let value = convert(source, v, key.pos)?;
                    Ok((key, value))
                })
                .collect::<Result<_, Diagnostic>>()?,
        ),
        YamlData::Tagged(_, inner) => return convert(source, inner, pos),
        YamlData::Alias(_) => {
            return Err(source
                .diagnostic(Severity::Error, pos, 1, "YAML aliases are not supported here")
                .with_hint("write the value out in full"));
        }
        YamlData::BadValue => {
            return Err(source.diagnostic(Severity::Error, pos, 1, "this value cannot be read"));
        }
    };
    Ok(Node { pos, width: width.max(1), value })
}

/// Collects diagnostics for one source file while typed values are read from its tree.
pub struct Reader<'s> {
    pub source: &'s Source,
    pub diagnostics: Diagnostics,
}

impl<'s> Reader<'s> {
    pub fn new(source: &'s Source) -> Self {
        Reader { source, diagnostics: Diagnostics::default() }
    }

    pub fn path(&self) -> &Path {
        &self.source.path
    }

    pub fn error(&mut self, node: &Node, title: impl Into<String>) -> &mut Diagnostic {
        let d = self.source.diagnostic(Severity::Error, node.pos, node.width, title);
        self.diagnostics.push(d);
        self.diagnostics.0.last_mut().expect("just pushed")
    }

    pub fn error_hint(&mut self, node: &Node, title: impl Into<String>, hint: impl Into<String>) {
        self.error(node, title).hint = Some(hint.into());
    }

    pub fn warning(&mut self, node: &Node, title: impl Into<String>, hint: Option<String>) {
        let mut d = self.source.diagnostic(Severity::Warning, node.pos, node.width, title);
        d.hint = hint;
        self.diagnostics.push(d);
    }

    /// Opens `node` as a mapping with the given known keys. Unknown keys are
    /// reported (with a "did you mean"); the mapping is still returned so the
    /// known keys get checked too.
    pub fn map<'n>(&mut self, node: &'n Node, what: &str, known: &[&str]) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.error(node, format!("{what} must be a mapping, found {}", node.value.kind()));
            return None;
        };
        let mut fields = Fields { node, entries: Vec::new() };
        for (key, value) in entries {
            let Value::Str(name) = &key.value else {
                self.error(key, format!("keys of {what} must be strings"));
                continue;
            };
            if known.contains(&name.as_str()) {
                fields.entries.push((name.as_str(), key, value));
            } else {
                let hint = match did_you_mean(name, known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known keys here: {}", known.join(", ")),
                };
                self.error_hint(key, format!("unknown key `{name}` in {what}"), hint);
            }
        }
        Some(fields)
    }

    /// Reads a string; numbers and booleans are not silently turned into strings.
    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            other => {
                self.error(node, format!("{what} must be a string, found {}", other.kind()));
                None
            }
        }
    }

    /// Reads a scalar as text: strings as they are, numbers and booleans as written.
    /// For values such as header values or form fields where `1` and `"1"` mean the same.
    pub fn scalar_text(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.error(node, format!("{what} must be a single value, found {}", other.kind()));
                None
            }
        }
    }

    pub fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            other => {
                self.error(node, format!("{what} must be true or false, found {}", other.kind()));
                None
            }
        }
    }

    pub fn seq<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            other => {
                self.error(node, format!("{what} must be a list, found {}", other.kind()));
                None
            }
        }
    }

    /// A mapping's entries as (key text, key node, value node), for free-form maps
    /// such as headers or captures.
    pub fn pairs<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(String, &'n Node, &'n Node)> {
        let Value::Map(entries) = &node.value else {
            self.error(node, format!("{what} must be a mapping, found {}", node.value.kind()));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            match &key.value {
                Value::Str(k) => out.push((k.clone(), key, value)),
                Value::Int(i) => out.push((i.to_string(), key, value)),
                _ => {
                    self.error(key, format!("keys of {what} must be strings"));
                }
            }
        }
        out
    }
}

/// The known keys of one mapping, looked up by name.
pub struct Fields<'n> {
    pub node: &'n Node,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|(_, _, v)| *v)
    }

    /// The node of the key itself, for errors about the key's presence.
    pub fn key_node(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|(_, k, _)| *k)
    }

    /// A required key; its absence is reported at the mapping.
    pub fn require(&self, reader: &mut Reader<'_>, key: &str, what: &str) -> Option<&'n Node> {
        let found = self.get(key);
        if found.is_none() {
            reader.error(self.node, format!("{what} is missing `{key}`"));
        }
        found
    }

    /// The keys present, in document order.
    pub fn keys(&self) -> impl Iterator<Item = &'n str> + '_ {
        self.entries.iter().map(|(k, _, _)| *k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> Node {
        parse(&Source::new("t.yaml", text)).unwrap().unwrap()
    }

    #[test]
    fn positions_are_one_based_and_point_at_values() {
        let n = node("name: home\nsteps:\n  - x: 1\n");
        let Value::Map(entries) = &n.value else { panic!() };
        assert_eq!(entries[0].1.pos, Pos { line: 1, col: 7 });
        let Value::Seq(items) = &entries[1].1.value else { panic!() };
        assert_eq!(items[0].pos, Pos { line: 3, col: 5 });
    }

    #[test]
    fn duplicate_keys_are_an_error_with_a_position() {
        let err = parse(&Source::new("t.yaml", "a: 1\na: 2\n")).unwrap_err();
        assert!(err.title.contains("duplicate"), "{}", err.title);
        assert_eq!(err.pos.unwrap().line, 2);
    }

    #[test]
    fn unknown_keys_get_a_suggestion_and_known_ones_are_kept() {
        let source = Source::new("t.yaml", "nmae: x\nschedule: y\n");
        let n = parse(&source).unwrap().unwrap();
        let mut r = Reader::new(&source);
        let f = r.map(&n, "a journey", &["name", "schedule"]).unwrap();
        assert!(f.get("schedule").is_some());
        assert_eq!(r.diagnostics.0.len(), 1);
        assert_eq!(r.diagnostics.0[0].hint.as_deref(), Some("did you mean `name`?"));
    }
}
