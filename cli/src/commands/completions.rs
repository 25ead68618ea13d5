//! `credledger completions SHELL`: a shell completion script on standard output.

use std::io::Write as _;
use std::process::ExitCode;

/// Writes the completion script of `command` (the whole CLI) for `shell` to standard output. The
/// script is built in memory first, so a closed pipe (`| head`) ends the command quietly instead
/// of panicking.
///
/// Example: credledger completions bash > ~/.local/share/bash-completion/completions/credledger
pub fn run(shell: clap_complete::Shell, command: &mut clap::Command) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, command, "credledger", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: writing the completion script: {error}");
            ExitCode::from(crate::client::exit::SERVER)
        }
    }
}
