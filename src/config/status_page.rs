//! The `status_page:` section: the status page's title and the components it shows, each made
//! of targets and failover groups, and groups of components (shown worst-of).
//!
//! At most one file may set it. The targets and failover groups a component names are checked
//! once every file is read, so a component may name a target defined in another file. Without
//! the section, [`StatusPage::effective`] makes one component per target (failover check
//! targets excepted) and one per failover group.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diag::{Diagnostics, Pos};

use super::Config;

/// The title shown when the section does not set one.
pub const DEFAULT_TITLE: &str = "Status";

/// `status_page:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatusPage {
    /// The page's title.
    pub title: Option<String>,
    /// A line under the title.
    pub description: Option<String>,
    /// The public base URL of the page (`https://status.example.com`), for links in the feed.
    pub url: Option<Spanned<String>>,
    /// The components shown, in order.
    #[serde(default)]
    pub components: Vec<Spanned<RawComponent>>,
    /// Groups of components, each shown as the worst of its members.
    #[serde(default)]
    pub groups: Vec<Spanned<RawComponentGroup>>,
}

/// One entry of `status_page.components`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComponent {
    /// Shown name; also the component in `/badge/COMPONENT/...`.
    pub name: Spanned<String>,
    /// A line under the name.
    pub description: Option<String>,
    /// Scheduled targets it is made of.
    #[serde(default)]
    pub targets: Vec<Spanned<String>>,
    /// Failover groups it is made of.
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
}

/// One entry of `status_page.groups`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComponentGroup {
    /// Shown name.
    pub name: Spanned<String>,
    /// A line under the name.
    pub description: Option<String>,
    /// Its components, by name.
    pub components: Vec<Spanned<String>>,
}

/// The checked `status_page:` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusPage {
    /// Title.
    pub title: String,
    /// A line under the title.
    pub description: Option<String>,
    /// Public base URL, without a trailing slash.
    pub url: Option<String>,
    /// Components, in order.
    pub components: Vec<PageComponent>,
    /// Groups of components.
    pub groups: Vec<PageGroup>,
}

/// A component of the status page.
#[derive(Debug, Clone, PartialEq)]
pub struct PageComponent {
    /// Name (unique among components and groups).
    pub name: String,
    /// A line under the name.
    pub description: Option<String>,
    /// Scheduled targets.
    pub targets: Vec<String>,
    /// Failover groups.
    pub groups: Vec<String>,
}

/// A group of components, shown as the worst of its members.
#[derive(Debug, Clone, PartialEq)]
pub struct PageGroup {
    /// Name (unique among components and groups).
    pub name: String,
    /// A line under the name.
    pub description: Option<String>,
    /// Member components, by name.
    pub components: Vec<String>,
}

/// Whether `name` is a failover group's check target (`GROUP/INSTANCE-INDEX`).
pub fn is_check_target(name: &str) -> bool {
    name.contains('/')
}

impl StatusPage {
    /// The page in force for `config`: its `status_page:` section, or one component per
    /// target (failover check targets excepted) and one per failover group.
    pub fn effective(config: &Config) -> StatusPage {
        if let Some(p) = &config.status_page {
            return p.clone();
        }
        let targets = config
            .targets
            .iter()
            .filter(|t| !is_check_target(&t.name))
            .map(|t| PageComponent {
                name: t.name.clone(),
                description: None,
                targets: vec![t.name.clone()],
                groups: Vec::new(),
            });
        let groups = config.failover.iter().map(|g| PageComponent {
            name: g.name.clone(),
            description: None,
            targets: Vec::new(),
            groups: vec![g.name.clone()],
        });
        StatusPage {
            title: DEFAULT_TITLE.to_string(),
            description: None,
            url: None,
            components: targets.chain(groups).collect(),
            groups: Vec::new(),
        }
    }
}

/// A name written in the section, kept with where it was written to be checked at the end.
struct Reference {
    name: String,
    field: String,
    at: Pos,
}

/// `status_page:` across the files: set in one file at most, its references to targets and
/// failover groups checked once every file is read.
#[derive(Default)]
pub(super) struct StatusPageSection {
    page: Option<StatusPage>,
    /// Where it was set: file, line.
    at: Option<(PathBuf, u64)>,
    targets: Vec<Reference>,
    groups: Vec<Reference>,
}

impl StatusPageSection {
    /// Checks the section as found in the current file.
    pub(super) fn check(&mut self, diag: &mut Diagnostics, raw: &Spanned<RawStatusPage>) {
        if let Some((f, l)) = &self.at {
            let msg = format!("status_page is already set at {}:{l}", f.display());
            diag.error(raw, "status_page", msg);
            return;
        }
        self.at = Some((diag.file().to_path_buf(), raw.referenced.line()));
        let r = &raw.value;
        let url = r.url.as_ref().and_then(|u| check_url(diag, u));
        let mut names = HashSet::new();
        let mut page = StatusPage {
            title: r.title.clone().unwrap_or_else(|| DEFAULT_TITLE.to_string()),
            description: r.description.clone(),
            url,
            ..StatusPage::default()
        };
        for (i, c) in r.components.iter().enumerate() {
            let field = format!("status_page.components[{i}]");
            let c = &c.value;
            check_name(diag, &mut names, &c.name, &field);
            if c.targets.is_empty() && c.groups.is_empty() {
                let msg = "a component needs at least one of `targets` or `groups`";
                diag.error(&c.name, field.clone(), msg);
            }
            self.note(&c.targets, &field, "targets", true);
            self.note(&c.groups, &field, "groups", false);
            page.components.push(PageComponent {
                name: c.name.value.clone(),
                description: c.description.clone(),
                targets: c.targets.iter().map(|t| t.value.clone()).collect(),
                groups: c.groups.iter().map(|g| g.value.clone()).collect(),
            });
        }
        let components: HashSet<&str> = r
            .components
            .iter()
            .map(|c| c.value.name.value.as_str())
            .collect();
        for (i, g) in r.groups.iter().enumerate() {
            let field = format!("status_page.groups[{i}]");
            let g = &g.value;
            check_name(diag, &mut names, &g.name, &field);
            for (j, m) in g.components.iter().enumerate() {
                if !components.contains(m.value.as_str()) {
                    let msg = format!(
                        "no component named `{}` under `status_page.components`",
                        m.value
                    );
                    diag.error(m, format!("{field}.components[{j}]"), msg);
                }
            }
            page.groups.push(PageGroup {
                name: g.name.value.clone(),
                description: g.description.clone(),
                components: g.components.iter().map(|m| m.value.clone()).collect(),
            });
        }
        self.page = Some(page);
    }

    fn note(&mut self, names: &[Spanned<String>], field: &str, key: &str, targets: bool) {
        let list = if targets {
            &mut self.targets
        } else {
            &mut self.groups
        };
        for (j, n) in names.iter().enumerate() {
            list.push(Reference {
                name: n.value.clone(),
                field: format!("{field}.{key}[{j}]"),
                at: n.into(),
            });
        }
    }

    /// Checks the named targets and groups against every file's, and sets the page.
    pub(super) fn finish(self, diag: &mut Diagnostics, config: &mut Config) {
        let Some((file, _)) = &self.at else {
            return;
        };
        let here = diag.file().to_path_buf();
        diag.set_file(file);
        let targets: HashSet<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        let groups: HashSet<&str> = config.failover.iter().map(|g| g.name.as_str()).collect();
        for r in &self.targets {
            if !targets.contains(r.name.as_str()) {
                let msg = format!(
                    "no target named `{}` is configured under `targets:`",
                    r.name
                );
                diag.error(r.at, r.field.clone(), msg);
            }
        }
        for r in &self.groups {
            if !groups.contains(r.name.as_str()) {
                let msg = format!(
                    "no failover group named `{}` is configured under `failover:`",
                    r.name
                );
                diag.error(r.at, r.field.clone(), msg);
            }
        }
        diag.set_file(here);
        config.status_page = self.page;
    }
}

/// A component or group name: non-empty, without `/` (it is a path segment of the badge
/// URLs), unique among components and groups.
fn check_name(
    diag: &mut Diagnostics,
    seen: &mut HashSet<String>,
    name: &Spanned<String>,
    field: &str,
) {
    let field = format!("{field}.name");
    let n = name.value.trim();
    if n.is_empty() || n.len() > 128 || n.contains('/') {
        let msg = format!(
            "`{}` is not a component name: 1 to 128 characters, no `/`",
            name.value
        );
        diag.error(name, field, msg);
    } else if !seen.insert(n.to_string()) {
        let msg = format!("duplicate component or group name `{n}`");
        diag.error(name, field, msg);
    }
}

/// The public base URL: `http` or `https`, kept without a trailing slash.
fn check_url(diag: &mut Diagnostics, u: &Spanned<String>) -> Option<String> {
    match url::Url::parse(&u.value) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
            Some(u.value.trim_end_matches('/').to_string())
        }
        Ok(_) => {
            diag.error(u, "status_page.url", "the URL must be http:// or https://");
            None
        }
        Err(e) => {
            diag.error(u, "status_page.url", format!("not a URL: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGETS: &str = "targets:\n  - name: api\n    url: http://127.0.0.1:1/\n  - name: db\n    url: http://127.0.0.1:2/\nfailover:\n  - name: gw\n    instances: [http://127.0.0.1:3, http://127.0.0.1:4]\n    check: { path: /health }\n";

    #[test]
    fn default_page_has_one_component_per_target_and_group_without_check_targets() {
        let c = crate::config::load_str("t.yaml", TARGETS).expect("loads");
        let p = StatusPage::effective(&c);
        let names: Vec<_> = p.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["api", "db", "gw"]);
        assert_eq!(p.components[2].groups, ["gw"]);
        assert_eq!(p.title, DEFAULT_TITLE);
    }

    #[test]
    fn section_is_read_with_components_and_groups() {
        let y = format!(
            "{TARGETS}status_page:\n  title: Acme\n  url: https://status.example.com/\n  components:\n    - name: API\n      targets: [api]\n    - name: Gateway\n      groups: [gw]\n  groups:\n    - name: Public\n      components: [API, Gateway]\n"
        );
        let c = crate::config::load_str("t.yaml", &y).expect("loads");
        let p = c.status_page.expect("set");
        assert_eq!(p.title, "Acme");
        assert_eq!(p.url.as_deref(), Some("https://status.example.com"));
        assert_eq!(p.components[1].groups, ["gw"]);
        assert_eq!(p.groups[0].components, ["API", "Gateway"]);
    }

    #[test]
    fn unknown_target_group_and_component_are_errors_naming_file_line_and_field() {
        let y = format!(
            "{TARGETS}status_page:\n  components:\n    - name: API\n      targets: [nope]\n      groups: [none]\n  groups:\n    - name: G\n      components: [Missing]\n"
        );
        let e = crate::config::load_str("t.yaml", &y).expect_err("refused");
        let text = e.to_string();
        assert!(
            text.contains("t.yaml:13")
                && text.contains("status_page.components[0].targets[0]")
                && text.contains("no target named `nope`"),
            "{text}"
        );
        assert!(
            text.contains("status_page.components[0].groups[0]"),
            "{text}"
        );
        assert!(
            text.contains("status_page.groups[0].components[0]") && text.contains("`Missing`"),
            "{text}"
        );
    }

    #[test]
    fn duplicate_and_slashed_names_and_bad_url_are_errors() {
        let y = format!(
            "{TARGETS}status_page:\n  url: ftp://x\n  components:\n    - name: a/b\n      targets: [api]\n    - name: API\n      targets: [api]\n    - name: API\n      targets: [db]\n"
        );
        let text = crate::config::load_str("t.yaml", &y)
            .expect_err("refused")
            .to_string();
        assert!(text.contains("status_page.url"), "{text}");
        assert!(text.contains("`a/b` is not a component name"), "{text}");
        assert!(
            text.contains("duplicate component or group name `API`"),
            "{text}"
        );
    }
}
