//! The `watchfire` binary: parse the command line, set up logging and the runtime, run.

use std::process::ExitCode;

use watchfire::cli;

/// mimalloc instead of glibc's malloc: a fresh-connection probe makes ~15 small allocations and
/// frees them on another thread as often as not; under callgrind the probe benchmark spends
/// 12 % fewer instructions per probe with it (benches/probe_rate.rs uses it too).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // watchfire's subcommands, or blackbox_exporter's flags (by the binary's name or the flags).
    let invocation = cli::parse(std::env::args_os().collect());
    let (format, level) = invocation.logging();
    watchfire::telemetry::init(format, level);
    watchfire::resources::raise_nofile();
    let runtime = match watchfire::threads::build_tokio(None) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("watchfire: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(cli::run_invocation(invocation))
}
