//! The `runbookd` binary.

use clap::Parser;
use runbookd::cli::{Cli, Command, LogFormat};
use runbookd::commands;

fn main() {
    // 1. Parse flags (clap exits with 2 on bad usage); one TLS provider for the process.
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    // 2. Diagnostics go to stderr; RUST_LOG tunes them. The daemon says more.
    let default = match cli.command {
        Command::Serve(_) => "info,sqlx=warn",
        _ => "warn",
    };
    init_tracing(cli.global.log_format, default);
    // 3. A runtime whose blocking threads have room for deep script call stacks.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 * 1024 * 1024)
        .build()
        .expect("the async runtime starts");
    // 4. Run the command; report a failure as one sentence and a hint.
    let code = match runtime.block_on(commands::dispatch(cli)) {
        Ok(exit) => exit,
        Err(f) => {
            eprintln!("error: {}", f.message);
            if let Some(h) = f.hint {
                eprintln!("hint: {h}");
            }
            f.exit
        }
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code as i32);
}

fn init_tracing(format: LogFormat, default: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
