//! The `watchfire` binary: parse the command line, set up logging and the runtime, run.

use std::process::ExitCode;

use clap::Parser;
use watchfire::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(cli.command, Command::Demo(_) | Command::Probe(_));
    watchfire::telemetry::init(cli.log_format, cli.verbose, quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("watchfire")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("watchfire: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(cli::execute(cli))
}
