//! Config diagnostics: the problems a config check finds, each placed at a file, a line, a
//! column and a field.
//!
//! Every checker of a config section records its problems into one [`Diagnostics`] collector;
//! the loader turns what was collected into [`ConfigErrors`], which `watchfire check` lists in
//! full. A check that runs before the position of its input is known (a module's `validate()`,
//! a `tls_config` check) returns a [`FieldError`]: the field as data, placed later with
//! [`Diagnostics::field_error`]. [`Origin`] is where a checked item (a target, a memory
//! watch) was defined, kept for later messages.
//!
//! This module is a leaf: it imports nothing from the rest of watchfire.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

/// Where in a file: 1-based line and column, 0 when unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line, 0 when the problem is the file as a whole.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
}

impl Pos {
    /// The position `line`:`column`.
    pub const fn new(line: u64, column: u64) -> Pos {
        Pos { line, column }
    }
}

impl From<Location> for Pos {
    fn from(l: Location) -> Pos {
        Pos::new(l.line(), l.column())
    }
}

impl From<&Location> for Pos {
    fn from(l: &Location) -> Pos {
        Pos::new(l.line(), l.column())
    }
}

impl<T> From<&Spanned<T>> for Pos {
    fn from(s: &Spanned<T>) -> Pos {
        Pos::from(s.referenced)
    }
}

/// Where something was defined in a config (a target, a watch), for messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// File.
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: u64,
}

/// One problem in a config: what, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when the problem is the file as a whole).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
    /// Dotted path of the field (`targets[1].timeout`), empty for file-level problems.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// A problem with `file` as a whole (no line, no field).
    pub fn in_file(file: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        // A message may quote the value it is about: URLs in it are shown redacted.
        write!(f, ": {}", crate::redact::urls_in(&self.message))
    }
}

/// All the problems found in a config.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A problem with a field, not yet placed in a file: the field's dotted path relative to the
/// part that was checked (`tcp.query_response[0].expect`), and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path of the field, relative to the part checked; empty for the part as a whole.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same problem with its field placed under `prefix` (`tls_config.ca_file` under
    /// `tcp` is `tcp.tls_config.ca_file`).
    pub fn under(self, prefix: &str) -> FieldError {
        FieldError {
            field: join(prefix, &self.field),
            message: self.message,
        }
    }
}

/// `prefix.field`, or whichever of the two is not empty.
fn join(prefix: &str, field: &str) -> String {
    match (prefix.is_empty(), field.is_empty()) {
        (true, _) => field.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{field}"),
    }
}

/// The one collector of config problems: every checker records each problem it finds here, at
/// the file being checked, a position and a field.
#[derive(Debug, Default)]
pub struct Diagnostics {
    file: PathBuf,
    errors: Vec<ConfigError>,
}

impl Diagnostics {
    /// An empty collector for problems in `file`.
    pub fn new(file: impl Into<PathBuf>) -> Diagnostics {
        Diagnostics {
            file: file.into(),
            errors: Vec::new(),
        }
    }

    /// The file problems are recorded in.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Records the next problems in `file` (the checker moved on to another file).
    pub fn set_file(&mut self, file: impl Into<PathBuf>) {
        self.file = file.into();
    }

    /// Records a problem with `field` at `at` in the current file.
    pub fn error(
        &mut self,
        at: impl Into<Pos>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let at = at.into();
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: at.line,
            column: at.column,
            field: field.into(),
            message: message.into(),
        });
    }

    /// Records `e` at `at`, its field placed under `prefix` (`modules.tcp_x`).
    pub fn field_error(&mut self, at: impl Into<Pos>, prefix: &str, e: FieldError) {
        let e = e.under(prefix);
        self.error(at, e.field, e.message);
    }

    /// How many problems were recorded so far: compare before and after checking a part to
    /// learn whether that part had problems.
    pub fn count(&self) -> usize {
        self.errors.len()
    }

    /// True when no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The problems recorded so far, in order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// `value` when no problem was recorded, every problem otherwise.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    /// The problems recorded, in order.
    pub fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_column_and_field() {
        let mut d = Diagnostics::new("a.yaml");
        d.error(
            Pos::new(3, 5),
            "targets[0].timeout",
            "must be larger than 0",
        );
        d.error(Pos::new(4, 0), "", "bad");
        d.set_file("b.yaml");
        d.error(Pos::default(), "", "cannot read the file");
        let e = d.finish(()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a.yaml:3:5: targets[0].timeout: must be larger than 0\n\
             a.yaml:4: bad\n\
             b.yaml: cannot read the file"
        );
    }

    #[test]
    fn field_errors_are_placed_under_a_prefix() {
        let mut d = Diagnostics::new("m.yaml");
        let e = FieldError::new("tls_config.key_file", "missing").under("tcp");
        assert_eq!(e.to_string(), "tcp.tls_config.key_file: missing");
        d.field_error(Pos::new(7, 3), "modules.x", e);
        d.field_error(Pos::new(8, 3), "modules.y", FieldError::new("", "whole"));
        let fields: Vec<_> = d.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["modules.x.tcp.tls_config.key_file", "modules.y"]);
        assert_eq!(d.count(), 2);
        assert!(Diagnostics::default().finish(1).is_ok());
    }
}
