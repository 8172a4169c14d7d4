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
    match runtime.block_on(swctl::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swctl: {e}");
            e.exit_code()
        }
    }
}
