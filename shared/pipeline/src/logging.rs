//! Structured logs through `tracing`, the way `lambda_runtime` sets them up: JSON lines when
//! Lambda's advanced logging sets `AWS_LAMBDA_LOG_FORMAT=JSON`, level from
//! `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `INFO`.
//!
//! Two differences from `lambda_runtime::tracing::init_default_subscriber`:
//! - The runtime logs the raw invocation payload at TRACE level (target
//!   `lambda_runtime::layers::api_response`), and that payload is the webhook body with its
//!   `application_token` and OAuth tokens. That target is capped at DEBUG whatever the
//!   configured level, so no setting of `RUST_LOG` can put a secret in the logs.
//! - The filter is `tracing_subscriber`'s `Targets` (`info`, `info,aws_smithy_runtime=debug`,
//!   ...) instead of `EnvFilter`, whose span and field-value matching pulls a regex engine into
//!   every binary (about 0.3 MB of a 5 MB bootstrap) for a feature a Lambda log never needs.

use std::str::FromStr;
use tracing::Level;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The target whose TRACE events carry raw invocation payloads.
const RAW_PAYLOAD_TARGET: &str = "lambda_runtime::layers::api_response";

/// The log filter for a level setting such as `INFO` or `info,aws_smithy_runtime=debug`
/// (unparseable settings fall back to `INFO`), with the raw-payload cap.
pub fn filter(setting: Option<&str>) -> Targets {
    let setting = setting
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let mut targets = Targets::from_str(&setting.to_ascii_lowercase())
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    // Like lambda_runtime's subscriber: INFO for everything the setting does not name.
    if targets.default_level().is_none() {
        targets = targets.with_default(LevelFilter::INFO);
    }
    // The most detailed level the setting enables for that target, at most DEBUG.
    let cap = [Level::DEBUG, Level::INFO, Level::WARN, Level::ERROR]
        .into_iter()
        .find(|l| targets.would_enable(RAW_PAYLOAD_TARGET, l))
        .map_or(LevelFilter::OFF, LevelFilter::from_level);
    targets.with_target(RAW_PAYLOAD_TARGET, cap)
}

/// The filter from the environment: `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `INFO`.
pub fn filter_from_env() -> Targets {
    let setting = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    filter(setting.as_deref())
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
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_writer(writer);
    let registry = tracing_subscriber::registry().with(filter_from_env());
    // `try_init`: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = if json {
        registry.with(fmt.json()).try_init()
    } else {
        registry.with(fmt).try_init()
    };
}

/// Makes a panic end the process, in every build: release builds under cargo-lambda and
/// `sam build` are compiled with `panic = "abort"` anyway, so local runs and tests behave like
/// AWS (a panic is never quietly turned into a 500 that hides it).
pub fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        std::process::abort();
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_in_any_case_and_fall_back_to_info() {
        assert!(filter(Some("DEBUG")).would_enable("b24_pipeline", &Level::DEBUG));
        assert!(!filter(Some("INFO")).would_enable("b24_pipeline", &Level::DEBUG));
        assert!(filter(None).would_enable("b24_pipeline", &Level::INFO));
        assert!(filter(Some("not a level!")).would_enable("b24_pipeline", &Level::INFO));
        let f = filter(Some("warn,aws_smithy_runtime=debug"));
        assert!(f.would_enable("aws_smithy_runtime::client", &Level::DEBUG));
        assert!(!f.would_enable("b24_pipeline", &Level::INFO));
    }

    #[test]
    fn raw_payloads_are_never_logged() {
        for setting in [
            "trace",
            "TRACE",
            "info,lambda_runtime=trace",
            "lambda_runtime::layers::api_response=trace",
        ] {
            let f = filter(Some(setting));
            assert!(
                !f.would_enable(RAW_PAYLOAD_TARGET, &Level::TRACE),
                "{setting}"
            );
        }
        assert!(filter(Some("trace")).would_enable(RAW_PAYLOAD_TARGET, &Level::DEBUG));
        assert!(!filter(Some("info")).would_enable(RAW_PAYLOAD_TARGET, &Level::DEBUG));
    }
}
