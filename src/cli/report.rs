//! The commands that read the store: `watchfire report`, and `watchfire impact` (which reads
//! the store when it is given no Prometheus).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::verify::parse::{parse_time, TimeSpec};

/// `watchfire report`: uptime, probes, latency, incidents and error budget over a range, from
/// the store.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Start of the range (RFC 3339, `-30d`, `now-7d`, Unix seconds); rounded down to the
    /// minute.
    #[arg(long, value_parser = parse_time, value_name = "TIME", default_value = "-30d", allow_hyphen_values = true)]
    pub from: TimeSpec,
    /// End of the range; rounded down to the minute (the minute under way is not in the store
    /// yet).
    #[arg(long, value_parser = parse_time, value_name = "TIME", default_value = "now", allow_hyphen_values = true)]
    pub to: TimeSpec,
    /// Output: `md` (a page for people: the monthly SLA report) or `json`.
    #[arg(long, value_enum, default_value_t = Format::Md)]
    pub format: Format,
    /// The availability objective the error budget belongs to, in percent (`99.9`, `99.95%`)
    /// or as a ratio (`0.999`).
    #[arg(long, default_value = "99.9", value_parser = parse_slo)]
    pub slo: f64,
    /// Only these targets (and their incidents' components); repeatable. Default: every target
    /// in the store.
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// The config the store was written under: targets are grouped into components as
    /// incidents group them (failover groups, `component` labels). Without it, a failover
    /// group's check target `GROUP/INDEX` counts as `GROUP` and every other target as its own
    /// component.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Write the report here instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The store.
    #[command(flatten)]
    pub storage: super::storage::StorageArgs,
}

/// `watchfire report --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Markdown.
    Md,
    /// JSON (the shape of [`crate::report::Report`]).
    Json,
}

/// Parses an objective: `99.9` and `99.9%` are percentages, `0.999` a ratio.
pub fn parse_slo(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (n, percent) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (t, false),
    };
    let v: f64 = n.parse().map_err(|_| {
        format!("`{s}` is not an objective; write e.g. `99.9` (percent) or `0.999`")
    })?;
    let r = if percent || v > 1.0 { v / 100.0 } else { v };
    if !(r > 0.0 && r < 1.0) {
        return Err(format!(
            "`{s}` is not an objective between 0 and 100% (exclusive)"
        ));
    }
    Ok(r)
}

/// Runs `watchfire report`: opens the store, prints (or writes) the report.
pub async fn run(a: ReportArgs) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context;
    let now = std::time::SystemTime::now();
    let from = crate::runtime::history::millis_of(a.from.resolve(now));
    let to = crate::runtime::history::millis_of(a.to.resolve(now).min(now));
    if from >= to {
        anyhow::bail!(
            "the range is empty: --from {} is not before --to {}",
            crate::report::rfc3339(from),
            crate::report::rfc3339(to)
        );
    }
    let store = crate::store::Store::open(&a.storage.options(Some(super::storage::DEFAULT_PATH)))
        .await
        .context("opening the store (--storage.path / --storage.url)")?;
    let (components, groups): (_, Vec<String>) = match &a.config {
        Some(p) => {
            let c = crate::config::load(p).map_err(|e| anyhow::anyhow!("{e}"))?;
            let groups = c.failover.iter().map(|g| g.name.clone()).collect();
            (c.components(), groups)
        }
        None => Default::default(),
    };
    let report = crate::report::compute(&store, from, to, a.slo, &a.targets, &components, &groups)
        .await
        .context("reading the store")?;
    let text = match a.format {
        Format::Md => crate::report::markdown(&report),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&report).context("encoding the report")?;
            s.push('\n');
            s
        }
    };
    match &a.output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objectives_in_percent_or_as_ratios() {
        assert!((parse_slo("99.9").unwrap() - 0.999).abs() < 1e-12);
        assert!((parse_slo("99.9%").unwrap() - 0.999).abs() < 1e-12);
        assert_eq!(parse_slo("0.999").unwrap(), 0.999);
        assert!(parse_slo("100").is_err());
        assert!(parse_slo("abc").is_err());
    }
}

/// `watchfire impact`: its figures from Prometheus, or from the store without `--prometheus`.
#[derive(Debug, Clone, Args)]
pub struct ImpactCommand {
    /// What to compute.
    #[command(flatten)]
    pub args: crate::verify::ImpactArgs,
    /// The store, when there is no --prometheus.
    #[command(flatten)]
    pub storage: super::storage::StorageArgs,
}

/// Runs `watchfire impact`.
pub async fn run_impact(a: ImpactCommand) -> anyhow::Result<std::process::ExitCode> {
    let store = a.storage.options(Some(super::storage::DEFAULT_PATH));
    crate::verify::run_impact(a.args, store).await
}
