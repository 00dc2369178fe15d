//! What every binary of the family shares on its command line: a tracing subscriber with
//! `RUST_LOG`-style filters writing text or JSON to standard error, shell completions,
//! and the exit codes they all use.
//!
//! ```
//! use clap::Parser;
//! use metal3_cli::{LogArgs, LogFormat};
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     log: LogArgs,
//! }
//!
//! let cli = Cli::parse_from(["tool", "--log-format", "json", "--log", "debug,hyper=warn"]);
//! assert_eq!(cli.log.log_format, LogFormat::Json);
//! assert!(cli.log.filter().is_ok());
//! ```

use std::io::IsTerminal;

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: the work failed (a host did not end where it should, a BMC refused).
pub const EXIT_FAILED: u8 = 1;
/// Exit status: the command line was wrong (clap's own status for usage errors).
pub const EXIT_USAGE: u8 = 2;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event, with its spans' fields.
    Text,
    /// One JSON object per line (for log collectors), with the current span and its
    /// parents' fields.
    Json,
}

/// The logging options of every binary.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// What to log, as `RUST_LOG` takes it (`info`, `debug,hyper=warn`,
    /// `metal3_conductor=debug`); defaults to `RUST_LOG`, else each binary's default.
    #[arg(long = "log", value_name = "FILTER", env = "RUST_LOG", global = true)]
    pub log: Option<String>,
    /// How log lines are written to standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// The filter the options ask for, `warn` when none is given.
    pub fn filter(&self) -> Result<EnvFilter, String> {
        self.filter_or("warn")
    }

    /// The filter the options ask for, `default` when none is given.
    pub fn filter_or(&self, default: &str) -> Result<EnvFilter, String> {
        let spec = self.log.as_deref().unwrap_or(default);
        EnvFilter::builder()
            .parse(spec)
            .map_err(|e| format!("--log {spec:?}: {e}"))
    }

    /// Installs the subscriber for this process: events at or above the filter go to
    /// standard error as text or JSON. Fails on a bad filter or a second installation.
    pub fn init(&self, default: &str) -> Result<(), String> {
        let filter = self.filter_or(default)?;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let installed = match self.log_format {
            LogFormat::Text => builder
                .with_ansi(std::io::stderr().is_terminal())
                .try_init(),
            LogFormat::Json => builder
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .try_init(),
        };
        installed.map_err(|e| format!("logging: {e}"))
    }
}

/// Writes completions for `shell` of the command `C` to standard output.
pub fn print_completions<C: clap::CommandFactory>(shell: clap_complete::Shell) {
    let mut command = C::command();
    let name = command.get_name().to_string();
    clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
}

pub use clap_complete::Shell;
