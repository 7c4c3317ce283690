//! The `runbookd` binary.

use runbookd::cli::{Cli, Command, LogFormat};
use runbookd::commands;

fn main() {
    // 1. Parse flags (clap exits with 2 on bad usage); one TLS provider for the process.
    let cli = Cli::parse_args();
    let _ = rustls::crypto::ring::default_provider().install_default();
    quiet_on_broken_pipe();
    // 2. Diagnostics go to stderr; RUST_LOG tunes them. The daemon says more.
    let default = match cli.command {
        Command::Serve(_) => "info,sqlx=warn",
        _ => "warn",
    };
    init_tracing(cli.global.log_format, default);
    // 3. A runtime whose threads have room for the deepest script values
    //    (address space, touched only as deep as a script goes), so scripts
    //    run on its blocking threads without a thread of their own.
    let stack = runbookd::script::script_stack_bytes();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(stack)
        .on_thread_start(move || runbookd::script::started_with_stack(stack))
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

/// A reader that went away (`runbookd next | head -1`) ends the command
/// quietly with success, as it ends `cat`, instead of a panic: `print!`
/// panics when stdout is a closed pipe.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = (payload.downcast_ref::<String>().map(String::as_str))
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
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
