//! `trainer`: parses the command line and runs the subcommand (see
//! [`trainer::cli`]). Errors go to stderr with exit status 1; clap's usage
//! errors exit with status 2.

use clap::Parser;

fn main() {
    let cli = trainer::cli::Cli::parse();
    if let Err(e) = trainer::cli::run(cli.into_command()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
