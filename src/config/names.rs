//! The check that no name is defined twice, shared by the whole check of a config and the
//! replay of a file's unchanged targets ([`super::inline`]).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::diag::{Diagnostics, Pos};

/// Records `name`, written at `at`, as defined there, or a problem naming where it was defined
/// first.
pub(super) fn note_name_at(
    diag: &mut Diagnostics,
    seen: &mut HashMap<String, (PathBuf, u64)>,
    name: &str,
    at: Pos,
    field: &str,
) {
    if let Some((f, l)) = seen.get(name) {
        let msg = format!(
            "duplicate name `{name}` (first defined at {}:{l})",
            f.display()
        );
        diag.error(at, field, msg);
    } else {
        seen.insert(name.to_string(), (diag.file().to_path_buf(), at.line));
    }
}
