//! Bounds on what a config can make watchfire read or compile: every file read through
//! [`read_capped`] (or [`read_capped_async`]) stops at a size limit, and every regular
//! expression and CEL expression of a config is measured by a cheap scan (length and nesting)
//! before it is parsed, so that no file, however large or endless (`/dev/zero`), and no
//! expression, however deeply nested, can exhaust memory or overflow a stack.
//!
//! The limits are constants; the README's "Limits" section lists them.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Largest config file read (one file of a config directory too).
pub const MAX_CONFIG_FILE_BYTES: u64 = 32 << 20;
/// Most entries (files of any kind) a config directory may hold.
pub const MAX_CONFIG_DIR_ENTRIES: usize = 10_000;
/// Largest request body read from a `body_file`.
pub const MAX_BODY_FILE_BYTES: u64 = 32 << 20;
/// Largest CA, certificate or key file.
pub const MAX_PEM_FILE_BYTES: u64 = 4 << 20;
/// Largest token, password or header-value file.
pub const MAX_SECRET_FILE_BYTES: u64 = 1 << 20;

/// Longest regular expression, in bytes.
pub const MAX_REGEX_LEN: usize = 32 << 10;
/// Deepest nesting of groups and classes in a regular expression.
pub const MAX_REGEX_NESTING: usize = 100;
/// Largest compiled form of a regular expression, in bytes (the regex crate's default).
pub const MAX_REGEX_COMPILED_BYTES: usize = 10 << 20;
/// Longest CEL expression, in bytes.
pub const MAX_CEL_LEN: usize = 16 << 10;
/// Deepest nesting of brackets, braces, parentheses and conditionals (`?:`) in a CEL
/// expression, checked before it is parsed.
pub const MAX_CEL_NESTING: usize = 32;
/// Deepest parsed CEL expression (a chain `a.b.c` or `1 + 1 + 1` nests one level per link):
/// evaluating it recurses once per level, on the probe's own thread.
pub const MAX_CEL_DEPTH: usize = 40;
/// Stack of the thread a CEL expression is parsed on: the parser recurses deeply per level of
/// nesting; only the pages it touches are ever allocated.
const CEL_PARSE_STACK: usize = 64 << 20;

/// A file that could not be read within its limit.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading failed.
    #[error("cannot read the {what} {}: {source}", path.display())]
    Io {
        /// What the file is (`config file`, `body_file`, `CA file`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than its limit.
    #[error("the {what} {} is larger than {} (watchfire reads at most that much)", path.display(), human_bytes(*limit))]
    TooLarge {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A FIFO, socket or directory: reading it could block forever or means nothing.
    #[error("the {what} {} is not a regular file", path.display())]
    NotAFile {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
}

/// `n` bytes as people write them (`32 MiB`, `512 KiB`, `100 bytes`).
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// Refuses what is neither a regular file nor a character device (`/dev/null` as an empty body
/// is fine, and reading `/dev/zero` ends at the limit); a FIFO would block the read forever.
fn readable_kind(
    meta: &std::fs::Metadata,
    what: &'static str,
    path: &Path,
) -> Result<(), ReadError> {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    if t.is_file() || t.is_char_device() {
        return Ok(());
    }
    Err(ReadError::NotAFile {
        what,
        path: path.to_path_buf(),
    })
}

/// Reads at most `limit` bytes of `path`; a longer file is [`ReadError::TooLarge`] (found
/// without reading it when its size is known). `what` names the file in errors.
pub fn read_capped(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, ReadError> {
    let io = |source| ReadError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let too_large = || ReadError::TooLarge {
        what,
        path: path.to_path_buf(),
        limit,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    readable_kind(&meta, what, path)?;
    if meta.is_file() && meta.len() > limit {
        return Err(too_large());
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::with_capacity(meta.len().min(limit) as usize);
    file.take(limit + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(buf)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_capped_string(
    path: &Path,
    limit: u64,
    what: &'static str,
) -> Result<String, ReadError> {
    let bytes = read_capped(path, limit, what)?;
    String::from_utf8(bytes).map_err(|_| ReadError::Io {
        what,
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is not UTF-8 text",
        ),
    })
}

/// [`read_capped`] on tokio's blocking pool, for reads made while probing.
pub async fn read_capped_async(
    path: &Path,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, ReadError> {
    let owned = path.to_path_buf();
    match tokio::task::spawn_blocking(move || read_capped(&owned, limit, what)).await {
        Ok(r) => r,
        Err(e) => Err(ReadError::Io {
            what,
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// [`read_capped_async`] as UTF-8 text.
pub async fn read_capped_string_async(
    path: &Path,
    limit: u64,
    what: &'static str,
) -> Result<String, ReadError> {
    let bytes = read_capped_async(path, limit, what).await?;
    String::from_utf8(bytes).map_err(|_| ReadError::Io {
        what,
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is not UTF-8 text",
        ),
    })
}

/// An expression refused before or while it was compiled.
#[derive(Debug, thiserror::Error)]
pub enum ExprError {
    /// Longer than its limit.
    #[error("the {kind} is {len} bytes long; at most {max} are accepted")]
    TooLong {
        /// `regular expression` or `CEL expression`.
        kind: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Nested deeper than its limit.
    #[error("the {kind} nests more than {max} levels deep (brackets, groups, conditionals or chained operations); at most {max} are accepted")]
    TooDeep {
        /// `regular expression` or `CEL expression`.
        kind: &'static str,
        /// The depth found (the scan stops counting just past the limit).
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// Not a valid expression (the parser's message).
    #[error("{0}")]
    Invalid(String),
}

/// The deepest nesting of `([{` in a regular expression (escaped characters skipped), stopping
/// as soon as it passes `stop`.
fn regex_nesting(pattern: &str, stop: usize) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
                if max > stop {
                    break;
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Compiles a config's regular expression after checking its length and nesting, with the
/// compiled size and nesting bounded as well.
pub fn regex(pattern: &str) -> Result<regex::Regex, ExprError> {
    check_regex(pattern)?;
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX_COMPILED_BYTES)
        .nest_limit(MAX_REGEX_NESTING as u32 * 2)
        .build()
        .map_err(|e| ExprError::Invalid(e.to_string()))
}

/// [`regex()`] for a regular expression matched against bytes.
pub fn regex_bytes(pattern: &str) -> Result<regex::bytes::Regex, ExprError> {
    check_regex(pattern)?;
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX_COMPILED_BYTES)
        .nest_limit(MAX_REGEX_NESTING as u32 * 2)
        .build()
        .map_err(|e| ExprError::Invalid(e.to_string()))
}

/// The cheap scan before a regular expression is parsed: length and nesting.
fn check_regex(pattern: &str) -> Result<(), ExprError> {
    const KIND: &str = "regular expression";
    let depth = regex_nesting(pattern, MAX_REGEX_NESTING);
    if depth > MAX_REGEX_NESTING {
        return Err(ExprError::TooDeep {
            kind: KIND,
            depth,
            max: MAX_REGEX_NESTING,
        });
    }
    if pattern.len() > MAX_REGEX_LEN {
        return Err(ExprError::TooLong {
            kind: KIND,
            len: pattern.len(),
            max: MAX_REGEX_LEN,
        });
    }
    Ok(())
}

/// The deepest nesting of brackets, braces and parentheses in a CEL expression, plus one per
/// conditional (`?`), outside string literals; stops counting as soon as it passes `stop`.
fn cel_nesting(src: &str, stop: usize) -> usize {
    let b = src.as_bytes();
    let (mut depth, mut max, mut conditionals) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < b.len() && max + conditionals <= stop {
        match b[i] {
            q @ (b'"' | b'\'') => i = skip_cel_string(b, i, q),
            b'(' | b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'?' => conditionals += 1,
            _ => {}
        }
        i += 1;
    }
    max + conditionals
}

/// The index of the last byte of the string literal whose opening quote `q` is at `start`
/// (single or triple quoted; raw when prefixed by `r`/`R`, so `\` escapes nothing). An
/// unterminated literal runs to the end.
fn skip_cel_string(b: &[u8], start: usize, q: u8) -> usize {
    let prefix = |k: usize| start >= k && matches!(b[start - k], b'r' | b'R');
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    // `r'…'`, `br'…'`, `rb'…'`: the `r` must start the prefix, not end an identifier.
    let raw = (prefix(1)
        && (start < 2 || !is_ident(b[start - 2]) || matches!(b[start - 2], b'b' | b'B')))
        || (prefix(2) && matches!(b[start - 1], b'b' | b'B'));
    let triple = b.len() >= start + 3 && b[start + 1] == q && b[start + 2] == q;
    let mut i = if triple { start + 3 } else { start + 1 };
    while i < b.len() {
        if b[i] == b'\\' && !raw {
            i += 2;
            continue;
        }
        if b[i] == q && (!triple || (i + 2 < b.len() && b[i + 1] == q && b[i + 2] == q)) {
            return if triple { i + 2 } else { i };
        }
        i += 1;
    }
    b.len()
}

/// The keys and values of a map or struct literal.
fn entry_exprs(list: &[cel::common::ast::IdedEntryExpr]) -> Vec<&cel::IdedExpr> {
    use cel::common::ast::EntryExpr;
    list.iter()
        .flat_map(|entry| match &entry.expr {
            EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
            EntryExpr::StructField(f) => vec![&f.value],
        })
        .collect()
}

/// The depth of a parsed CEL expression, walked without recursion.
fn cel_depth(root: &cel::IdedExpr) -> usize {
    use cel::common::ast::Expr;
    let mut max = 0;
    let mut todo = vec![(root, 1usize)];
    while let Some((e, d)) = todo.pop() {
        max = max.max(d);
        let children: Vec<&cel::IdedExpr> = match &e.expr {
            Expr::Call(c) => c.target.iter().map(|t| &**t).chain(&c.args).collect(),
            Expr::Comprehension(c) => {
                vec![
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ]
            }
            Expr::List(l) => l.elements.iter().collect(),
            Expr::Select(s) => vec![&*s.operand],
            Expr::Map(m) => entry_exprs(&m.entries),
            Expr::Struct(s) => entry_exprs(&s.entries),
            Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => Vec::new(),
        };
        todo.extend(children.into_iter().map(|c| (c, d + 1)));
    }
    max
}

/// Compiles a config's CEL expression: its length and nesting are checked first, it is parsed
/// on a thread with a large fixed stack, and the parsed expression's depth is checked so that
/// evaluating it cannot overflow a probe thread's stack either.
pub fn cel(src: &str) -> Result<cel::Program, ExprError> {
    const KIND: &str = "CEL expression";
    let nesting = cel_nesting(src, MAX_CEL_NESTING);
    if nesting > MAX_CEL_NESTING {
        return Err(ExprError::TooDeep {
            kind: KIND,
            depth: nesting,
            max: MAX_CEL_NESTING,
        });
    }
    if src.len() > MAX_CEL_LEN {
        return Err(ExprError::TooLong {
            kind: KIND,
            len: src.len(),
            max: MAX_CEL_LEN,
        });
    }
    let parsed = std::thread::scope(|s| {
        let parse = || {
            let program =
                cel::Program::compile(src).map_err(|e| ExprError::Invalid(e.to_string()))?;
            let depth = cel_depth(program.expression());
            if depth > MAX_CEL_DEPTH {
                return Err(ExprError::TooDeep {
                    kind: KIND,
                    depth,
                    max: MAX_CEL_DEPTH,
                });
            }
            Ok(program)
        };
        match std::thread::Builder::new()
            .name("cel-parse".into())
            .stack_size(CEL_PARSE_STACK)
            .spawn_scoped(s, parse)
        {
            Ok(h) => h
                .join()
                .map_err(|_| ExprError::Invalid("the CEL parser failed".into())),
            Err(e) => Err(ExprError::Invalid(format!(
                "cannot start a thread to parse the CEL expression: {e}"
            ))),
        }
    });
    parsed?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_past_its_limit_is_refused_and_dev_zero_ends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_capped(&p, 10, "test file").unwrap(), b"0123456789");
        let e = read_capped(&p, 9, "test file").unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { limit: 9, .. }), "{e}");
        assert!(e.to_string().contains("test file"), "{e}");
        let e = read_capped(Path::new("/dev/zero"), 1 << 20, "config file").unwrap_err();
        assert!(e.to_string().contains("larger than 1 MiB"), "{e}");
        let e = read_capped(dir.path(), 10, "config file").unwrap_err();
        assert!(matches!(e, ReadError::NotAFile { .. }), "{e}");
    }

    #[test]
    fn regex_nesting_and_length_are_checked_before_parsing() {
        assert!(regex(r"^a(b|c)\(\[[x-z]+$").is_ok());
        let deep = format!("{}a{}", "(".repeat(30_000), ")".repeat(30_000));
        assert!(matches!(regex(&deep), Err(ExprError::TooDeep { .. })));
        let long = "a".repeat(MAX_REGEX_LEN + 1);
        assert!(matches!(regex(&long), Err(ExprError::TooLong { .. })));
        // Escaped brackets do not nest.
        assert!(regex(&r"\(".repeat(200)).is_ok());
    }

    #[test]
    fn cel_nesting_skips_strings_and_counts_conditionals() {
        assert_eq!(cel_nesting("body.a == '[[[[' && [1, [2]] == x", 99), 2);
        assert_eq!(cel_nesting(r#"r'\' + [1]"#, 99), 1);
        assert_eq!(cel_nesting(r#""a\"[[" + '''['''+(1)"#, 99), 1);
        assert_eq!(cel_nesting("a ? b : c ? d : e", 99), 2);
        assert_eq!(
            cel_nesting(&"[".repeat(30_000), MAX_CEL_NESTING),
            MAX_CEL_NESTING + 1
        );
    }

    #[test]
    fn deep_cel_is_refused_fast_and_what_passes_evaluates_on_a_small_stack() {
        let deep = format!("{}1{}", "[".repeat(30_000), "]".repeat(30_000));
        let t = std::time::Instant::now();
        assert!(matches!(cel(&deep), Err(ExprError::TooDeep { .. })));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        let chain = format!("1{}", " + 1".repeat(MAX_CEL_DEPTH + 5));
        assert!(
            matches!(cel(&chain), Err(ExprError::TooDeep { .. })),
            "a long chain is deep"
        );
        // The deepest accepted forms evaluate on a 2 MiB thread (a probe thread's stack).
        let n = MAX_CEL_NESTING;
        let accepted = [
            format!("{}1{} != 0", "[".repeat(n - 1), "]".repeat(n - 1)),
            format!("1{} > 0", " + 1".repeat(MAX_CEL_DEPTH - 3)),
            format!("{{'a': 1}}{} == 1", ".a".repeat(MAX_CEL_DEPTH - 3)),
        ];
        for src in accepted {
            let program = cel(&src).unwrap_or_else(|e| panic!("{src}: {e}"));
            let ok = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || {
                    let _ = program.execute(&cel::Context::default());
                })
                .unwrap()
                .join()
                .is_ok();
            assert!(ok);
        }
    }
}
