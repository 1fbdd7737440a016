//! Structured logs through `tracing`, the way `lambda_runtime` sets them up: JSON lines when
//! Lambda's advanced logging sets `AWS_LAMBDA_LOG_FORMAT=JSON`, level from
//! `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `INFO`.
//!
//! One difference from `lambda_runtime::tracing::init_default_subscriber`: the runtime logs the
//! raw invocation payload at TRACE level (target `lambda_runtime::layers::api_response`), and
//! that payload is the webhook body with its `application_token` and OAuth tokens. That target
//! is capped at DEBUG whatever the configured level, so no setting of `RUST_LOG` can put a
//! secret in the logs.

use tracing_subscriber::filter::{Directive, EnvFilter, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;

/// The directive that keeps the runtime's raw-payload trace out of the logs.
const NO_RAW_PAYLOADS: &str = "lambda_runtime::layers::api_response=debug";

/// The log filter from the environment, with the raw-payload cap.
pub fn env_filter() -> EnvFilter {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let cap: Directive = NO_RAW_PAYLOADS.parse().expect("static directive parses");
    EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy()
        .add_directive(cap)
}

/// Installs the global subscriber writing to stdout (call once, in `main`).
pub fn init() {
    init_with_writer(std::io::stdout);
}

/// Installs the global subscriber writing to `writer`. JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`.
pub fn init_with_writer<W>(writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(env_filter())
        .with_writer(writer);
    // `try_init`: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
