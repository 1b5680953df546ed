//! `trainer`: parses the command line and runs the subcommand (see
//! [`trainer::cli`]). Errors go to stderr with exit status 1; clap's usage
//! errors exit with status 2; a run stopped by Ctrl-C (SIGINT), SIGTERM or
//! SIGHUP exits with status 130 once it has said what was saved.

use clap::Parser;
use std::sync::atomic::Ordering;

/// Large tensors start on a cache line (see engine::memory).
#[global_allocator]
static ALLOC: engine::memory::CacheLineAligned = engine::memory::CacheLineAligned;

fn main() {
    // Reuse freed activation buffers instead of faulting in fresh pages for
    // every op's output (see engine::memory).
    engine::memory::keep_freed_memory();
    let cli = trainer::cli::Cli::parse();
    match trainer::cli::run(cli.into_command()) {
        Ok(()) => {}
        Err(e @ trainer::Error::Interrupted(_)) => {
            eprintln!("{e}");
            std::process::exit(trainer::cli::INTERRUPTED_EXIT_STATUS);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
    // The Ctrl-C handler raised the stop flag and training ended early (it
    // printed where the best model is): say so to the shell, as programs
    // killed by SIGINT do.
    if trainer::signals::stop_flag().load(Ordering::SeqCst) {
        std::process::exit(trainer::cli::INTERRUPTED_EXIT_STATUS);
    }
}
