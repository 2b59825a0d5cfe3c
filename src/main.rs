//! The `plan-invoicer` binary: parse, run, print, exit with the contract's code.

use std::process::ExitCode;

use clap::Parser;
use plan_invoicer::cli::{self, Cli, Command};
use plan_invoicer::progress::{stderr_is_terminal, LogWriter};

fn init_tracing(format: &str, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Log lines go above the progress line when one is on screen.
    // Colours only on a terminal: the writer is ours, so the subscriber cannot tell, and escape
    // codes in journald or a log file get in the way of every grep.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(stderr_is_terminal())
        .with_writer(LogWriter);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Threads for blocking work: database calls run in `block_in_place`, which hands the async
/// worker's core to a thread of this pool. At most a pool's connections plus three callers are
/// inside at once (`Db::run_async`), so a few threads do; the bound keeps idle threads (each
/// with its stack and allocator caches) from piling up on a loaded machine.
const MAX_BLOCKING_THREADS: usize = 16;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.render().to_string();
            let line = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: invalid arguments");
            eprintln!("{line}");
            return ExitCode::from(2);
        }
    };
    // The demo prints a table; its hundreds of passes log only warnings unless RUST_LOG says
    // otherwise. On a terminal the long commands draw a progress line and keep their INFO
    // lines (one per pass, one per invoice) for -v; warnings and errors always show.
    let long = matches!(
        cli.command,
        Command::RunOnce { .. } | Command::Backfill { .. } | Command::Audit { .. }
    );
    let level = if matches!(cli.command, Command::Demo { .. } | Command::Bench { .. })
        || (long && stderr_is_terminal() && !cli.verbose)
    {
        "warn"
    } else {
        "info"
    };
    init_tracing(&cli.log_format, level);
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(output) => {
            cli::print(&output, json);
            ExitCode::from(u8::try_from(output.exit_code).unwrap_or(1))
        }
        Err(e) => {
            eprintln!(
                "error: {}",
                e.to_string().lines().next().unwrap_or("unknown error")
            );
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}
