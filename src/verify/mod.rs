//! `watchfire verify` and `watchfire impact` (being written).

use std::process::ExitCode;

/// `watchfire verify` arguments.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {}

/// `watchfire impact` arguments.
#[derive(Debug, clap::Args)]
pub struct ImpactArgs {}

/// Runs `watchfire verify`.
pub async fn run_verify(_a: VerifyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("verify is not implemented yet")
}

/// Runs `watchfire impact`.
pub async fn run_impact(_a: ImpactArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("impact is not implemented yet")
}
