//! `watchfire demo` (being written).

use std::process::ExitCode;

/// Runs the demo.
pub async fn run(_a: crate::cli::DemoArgs) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
