//! `swctl`: parse the command line and run it; errors go to stderr with a
//! documented exit code (see the crate docs).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = swctl::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(swctl::run(cli));
    // A blocked stdin reader (dial-stdio) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swctl: {e}");
            e.exit_code()
        }
    }
}
