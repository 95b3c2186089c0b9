//! The `hyperplug` binary: a thin shell over the `hyperplug` library.

use clap::Parser;
use hyperplug::cli::{Cli, Command, TraceWhat};

fn init_tracing(cli: &Cli) {
    // A malformed HYPERPLUG_LOG falls back to "warn"; --trace applies either way.
    let base = std::env::var("HYPERPLUG_LOG").unwrap_or_else(|_| "warn".to_string());
    let mut directives = if tracing_subscriber::EnvFilter::try_new(&base).is_ok() {
        base
    } else {
        eprintln!("hyperplug: ignoring malformed HYPERPLUG_LOG={base:?}");
        "warn".to_string()
    };
    if let Command::Run(args) = &cli.command {
        for t in &args.trace {
            let d = match t {
                TraceWhat::Exits => "exits=trace",
                TraceWhat::Io => "io=trace",
                TraceWhat::Irq => "irq=trace",
                TraceWhat::Devices => "devices=trace",
            };
            directives.push(',');
            directives.push_str(d);
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(true)
        .init();
}

fn main() {
    let cli = Cli::parse();
    init_tracing(&cli);
    std::process::exit(hyperplug::commands::execute(cli));
}
