//! `targets:` written in a config file, checked again only when the file's text changed.
//!
//! Reading a few thousand targets costs far more than the text they are written in: the YAML
//! reader's typed values take tens of bytes per byte of text. A reload that changes nothing
//! should not pay that, so [`InlineCache`] keeps, per config file, the text its targets were
//! last checked from and what that check made: the target specs, where each name is written
//! and the `module:` references. When a file's text is the same (compared byte for byte), the
//! file is read past its `targets:` ([`super::raw::RawFile::without_targets`]) and those are
//! given back: the very specs running, so the reload's plan is a pointer comparison per target.
//!
//! Only a check that found no problem is kept, and only for targets that depend on nothing
//! but the file's text: a target with its own `metrics:` or `quorum:` (which feed sections
//! checked across files) or a `tls.ca_file` (whose presence is looked at on every load) makes
//! the file's targets read every time. Names are still entered into the check across files,
//! so a duplicate with another file is found as before.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{Diagnostics, Pos};

use super::target::ModuleRef;
use super::TargetSpec;

/// What the last good check of one file's `targets:` made, with the text it read.
#[derive(Debug)]
struct Checked {
    text: String,
    targets: Vec<Arc<TargetSpec>>,
    /// Where each target's name is written, in the order of `targets`.
    names: Vec<Pos>,
    module_refs: Vec<ModuleRef>,
}

/// The targets of each config file as last checked (see the module's documentation).
#[derive(Debug, Default)]
pub struct InlineCache {
    files: HashMap<PathBuf, Checked>,
    /// Times a file's `targets:` were read and checked.
    parsed: u64,
}

/// What a file's `targets:` add to the config being checked.
pub(super) struct Found<'a> {
    /// Names taken so far, with where (to report duplicates across files).
    pub seen: &'a mut HashMap<String, (PathBuf, u64)>,
    /// Targets' `module:` references, checked once every file is read.
    pub module_refs: &'a mut Vec<ModuleRef>,
    /// The config's targets.
    pub targets: &'a mut Vec<Arc<TargetSpec>>,
}

impl InlineCache {
    /// Times a config file's `targets:` were read and checked (a file whose text did not
    /// change since its last good check is not read again, and not counted).
    pub fn targets_parsed(&self) -> u64 {
        self.parsed
    }

    /// Whether `file`'s targets can be given back for `text`: it is, byte for byte, the text
    /// of their last good check.
    pub(super) fn unchanged(&self, file: &Path, text: &str) -> bool {
        self.files.get(file).is_some_and(|c| c.text == text)
    }

    /// Gives back `file`'s targets as last checked ([`InlineCache::unchanged`] said so).
    pub(super) fn replay(&self, diag: &mut Diagnostics, file: &Path, out: Found<'_>) {
        let Some(c) = self.files.get(file) else {
            return;
        };
        for (i, (t, at)) in c.targets.iter().zip(&c.names).enumerate() {
            let field = format!("targets[{i}].name");
            super::names::note_name_at(diag, out.seen, &t.name, *at, &field);
        }
        out.module_refs.extend(c.module_refs.iter().cloned());
        out.targets.extend(c.targets.iter().cloned());
    }

    /// Counts a read of `file`'s targets, and forgets what an earlier one made.
    pub(super) fn parsing(&mut self, file: &Path) {
        self.parsed += 1;
        self.files.remove(file);
    }

    /// Keeps what the check of `file`'s `targets:`, read from `text`, made: `targets` and
    /// `names` (where each name is written), `module_refs`. Not kept when a target depends on
    /// more than the text (see the module's documentation).
    pub(super) fn keep(
        &mut self,
        file: &Path,
        text: &str,
        targets: &[Arc<TargetSpec>],
        names: Vec<Pos>,
        module_refs: &[ModuleRef],
    ) {
        let ca_file = |t: &Arc<TargetSpec>| t.http().is_some_and(|h| h.tls.ca_file.is_some());
        if names.len() != targets.len() || targets.iter().any(ca_file) {
            return;
        }
        let c = Checked {
            text: text.to_string(),
            targets: targets.to_vec(),
            names,
            module_refs: module_refs.to_vec(),
        };
        self.files.insert(file.to_path_buf(), c);
    }

    /// Forgets the files that are not among `files` (no longer part of the config).
    pub(super) fn retain(&mut self, files: &[(&Path, &str)]) {
        self.files.retain(|f, _| files.iter().any(|(p, _)| p == f));
    }
}
