//! YAML errors placed in the file: the line, column and dotted field of a syntax or schema
//! error, found from the document's own structure.
//!
//! Each file is read within the YAML reader's budget, raised from its defaults so that one file
//! holds a few hundred thousand targets ([`MAX_YAML_VALUES`]); a file past a limit gets an error
//! in plain words ([`budget_message`]).

use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::Spanned;

use super::fields::one_line;
use super::raw::RawFile;
use crate::diag::{Diagnostics, Pos};

/// Parses one file's text, recording the problem and returning `None` when it is not YAML or
/// does not fit the schema.
pub(super) fn parse_file<T>(diag: &mut Diagnostics, text: &str) -> Option<RawFile<T>>
where
    RawFile<T>: serde::de::DeserializeOwned + Default,
{
    if text.trim().is_empty() {
        return Some(RawFile::default());
    }
    let mut options = crate::probers::tcp::Payload::yaml_options();
    options.budget = Some(budget());
    let e = match serde_saphyr::from_str_with_options(text, options.clone()) {
        Ok(r) => return Some(r),
        Err(e) => e,
    };
    // A document that is not YAML at all is reported as a syntax error, even when the typed
    // parse tripped over something else first; otherwise the error is about the schema and the
    // field is found by its position.
    let (e, paths) = match serde_saphyr::from_str_with_options::<Node>(text, options) {
        Ok(tree) => {
            let mut paths = Vec::new();
            collect_paths(&tree, "", &mut paths);
            (e, paths)
        }
        Err(syntax) => (syntax, Vec::new()),
    };
    let at = e.location().map(Pos::from).unwrap_or_default();
    let field = yaml_error_field(&e, &paths, at.line, at.column);
    diag.error(at, field, plain_yaml_message(&e));
    None
}

/// Most values (keys, list items and scalars) one config file may hold: about 280,000 targets
/// of the usual seven values each. The YAML reader's default (250,000) allowed ~35,000.
pub const MAX_YAML_VALUES: usize = 2_000_000;
/// Deepest nesting of mappings and lists in a config file (the YAML reader's default; a config
/// needs fewer than ten).
pub const MAX_YAML_DEPTH: usize = 64;

/// The YAML reader's limits for a config file.
fn budget() -> serde_saphyr::Budget {
    let mut b = serde_saphyr::Budget::default();
    b.max_nodes = MAX_YAML_VALUES;
    // Every value is one event, every mapping and list one more at its end.
    b.max_events = 2 * MAX_YAML_VALUES;
    b.max_depth = MAX_YAML_DEPTH;
    // The parser's own cap on `[`/`{` nesting, just past the depth limit: a deeper flow
    // collection is refused by the parser before the depth is counted (see `too_deep`).
    b.flow_nesting_limit = MAX_YAML_DEPTH + 1;
    b
}

/// A breached YAML limit in words a user acts on.
fn budget_message(breach: &BudgetBreach) -> String {
    let split = "split it into several files in a config directory";
    match breach {
        BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => format!(
            "the file holds more than {MAX_YAML_VALUES} values (keys, list items and scalars: \
             about 280,000 targets); {split}"
        ),
        BudgetBreach::Depth { .. } => too_deep(),
        BudgetBreach::Aliases { .. } | BudgetBreach::AliasAnchorRatio { .. } => {
            "the file repeats anchors (`*name`) too often; write the values out instead".into()
        }
        BudgetBreach::Anchors { .. } => {
            format!("the file defines too many anchors (`&name`); {split}")
        }
        BudgetBreach::Documents { .. } => {
            "the file holds too many YAML documents (`---`); a config file holds one".into()
        }
        BudgetBreach::ScalarBytes { .. } | BudgetBreach::InputBytes { .. } => {
            format!("the file's text is too large; {split}")
        }
        _ => format!("the file is too large or too complex to read; {split}"),
    }
}

/// The depth limit in words: the budget's depth count, or the parser's own nesting cap (which
/// refuses `[[[[…` before the depth is counted).
fn too_deep() -> String {
    format!("mappings and lists are nested more than {MAX_YAML_DEPTH} levels deep here")
}

/// Whether the parser refused the text for nesting past its cap.
fn parser_nesting_error(e: &serde_saphyr::Error) -> bool {
    use serde_saphyr::granit_parser::ErrorKind;
    use serde_saphyr::ExternalMessageSource;
    matches!(
        e,
        serde_saphyr::Error::ExternalMessage { source, .. }
            if matches!(&**source, ExternalMessageSource::Parser(s)
                if matches!(s.kind(), ErrorKind::RecursionLimitExceeded))
    )
}

/// The error behind the snippet and alias wrappers `serde_saphyr` puts around it.
fn inner_yaml_error(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = e
    {
        e = error;
    }
    e
}

/// The dotted field a YAML/serde error is about (`targets[1].bogus`), found from its position
/// in `paths` (see [`collect_paths`]); empty when unknown.
fn yaml_error_field(e: &serde_saphyr::Error, paths: &[Located], line: u64, column: u64) -> String {
    let at = (line, column);
    match inner_yaml_error(e) {
        serde_saphyr::Error::SerdeUnknownField { field, .. } => paths
            .iter()
            .find(|p| p.key && p.at == at && p.path.rsplit('.').next() == Some(field.as_str()))
            .map(|p| p.path.clone())
            .unwrap_or_else(|| field.clone()),
        serde_saphyr::Error::SerdeMissingField { field, .. } => match enclosing(paths, at) {
            Some(p) => format!("{}.{field}", p.path),
            None => (*field).to_string(),
        },
        _ => enclosing(paths, at)
            .map(|p| p.path.clone())
            .unwrap_or_default(),
    }
}

/// The last key or sequence element starting at or before `at` (the shallowest on a tie).
fn enclosing(paths: &[Located], at: (u64, u64)) -> Option<&Located> {
    if at.0 == 0 {
        return None;
    }
    let mut best: Option<&Located> = None;
    for p in paths {
        if p.at <= at && best.is_none_or(|b| p.at > b.at) {
            best = Some(p);
        }
    }
    best
}

/// The YAML error's message without the location and snippet (we print our own).
fn plain_yaml_message(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::MessageFormatter as _;
    match inner_yaml_error(e) {
        serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } => format!(
            "unknown key `{field}` (expected one of: {})",
            expected.join(", ")
        ),
        serde_saphyr::Error::Budget { breach, .. } => budget_message(breach),
        inner if parser_nesting_error(inner) => too_deep(),
        inner => one_line(&serde_saphyr::DefaultMessageFormatter.format_message(inner)),
    }
}

/// Any YAML document as a tree that remembers where each key and sequence element starts, to
/// name the field of a schema error from its position.
enum Node {
    Map(Vec<(Spanned<String>, Node)>),
    Seq(Vec<Spanned<Node>>),
    Leaf,
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = m.next_key::<Spanned<String>>()? {
                    entries.push((k, m.next_value::<Node>()?));
                }
                Ok(Node::Map(entries))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(n) = s.next_element::<Spanned<Node>>()? {
                    items.push(n);
                }
                Ok(Node::Seq(items))
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                serde::Deserialize::deserialize(d)
            }
            fn visit_newtype_struct<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Node, D::Error> {
                serde::Deserialize::deserialize(d)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
        }
        d.deserialize_any(V)
    }
}

/// A key or sequence element: where it starts and its dotted path.
struct Located {
    at: (u64, u64),
    path: String,
    key: bool,
}

/// Every key and sequence element of `node`, in document order.
fn collect_paths(node: &Node, prefix: &str, out: &mut Vec<Located>) {
    match node {
        Node::Map(entries) => {
            for (k, v) in entries {
                let path = if prefix.is_empty() {
                    k.value.clone()
                } else {
                    format!("{prefix}.{}", k.value)
                };
                out.push(Located {
                    at: (k.referenced.line(), k.referenced.column()),
                    path: path.clone(),
                    key: true,
                });
                collect_paths(v, &path, out);
            }
        }
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{prefix}[{i}]");
                out.push(Located {
                    at: (item.referenced.line(), item.referenced.column()),
                    path: path.clone(),
                    key: false,
                });
                collect_paths(&item.value, &path, out);
            }
        }
        Node::Leaf => {}
    }
}
