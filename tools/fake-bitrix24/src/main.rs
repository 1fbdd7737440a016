//! `b24-fake-bitrix24`: the fake Bitrix24 as a process, for the local dev stack.
//!
//! Runs in the foreground until SIGINT or SIGTERM and prints one line on stdout when ready:
//! `BITRIX24_FAKE_URL=http://127.0.0.1:PORT`. Everything else goes to stderr.

use std::io::Write;
use std::process::ExitCode;

use b24_fake_bitrix24::{AppSpec, FakeBitrix24, FakeConfig, PortalSpec};
use clap::Parser;

/// The application used when no `--app` is given.
const DEFAULT_APP: (&str, &str) = ("local.b24fake.app", "fake-client-secret");

/// A fake Bitrix24 REST + OAuth server on 127.0.0.1 (dev and tests only).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// An application `CLIENT_ID:SECRET` (repeatable; default local.b24fake.app:fake-client-secret).
    #[arg(long = "app", value_name = "CLIENT_ID:SECRET")]
    apps: Vec<String>,
    /// A portal with the first application installed (repeatable).
    #[arg(long = "portal", value_name = "MEMBER_ID")]
    portals: Vec<String>,
    /// Marker prefix of every issued token, to grep logs for leaks.
    #[arg(long, default_value = "")]
    token_prefix: String,
    /// Turn the REST rate limit off (default: 2 requests/s, burst 50 per portal).
    #[arg(long)]
    no_rate_limit: bool,
    /// Freeze the clock: time moves only through `POST /_fake/clock/advance`.
    #[arg(long)]
    freeze_clock: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut apps = Vec::new();
    for app in &args.apps {
        match app.split_once(':') {
            Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
                apps.push(AppSpec::new(id, secret))
            }
            _ => {
                eprintln!("error: --app wants CLIENT_ID:SECRET, got {app:?}");
                return ExitCode::from(2);
            }
        }
    }
    if apps.is_empty() {
        apps.push(AppSpec::new(DEFAULT_APP.0, DEFAULT_APP.1));
    }
    let first_app = apps[0].client_id.clone();
    let config = FakeConfig {
        port: args.port,
        token_prefix: args.token_prefix.clone(),
        portals: args
            .portals
            .iter()
            .map(|m| PortalSpec::new(m.as_str(), first_app.as_str()))
            .collect(),
        apps,
        rate_limit: if args.no_rate_limit {
            None
        } else {
            FakeConfig::default().rate_limit
        },
        freeze_clock: args.freeze_clock,
        ..FakeConfig::default()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: FakeConfig) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: a SIGTERM right after the ready line must stop us cleanly, not kill us.
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fake = match FakeBitrix24::start(config).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for portal in fake.portals() {
        eprintln!(
            "portal {} ({}): client_endpoint {}",
            portal.member_id, portal.client_id, portal.client_endpoint
        );
    }
    eprintln!(
        "oauth: {}  control: {}/_fake/",
        fake.oauth_url(),
        fake.base_url()
    );
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "BITRIX24_FAKE_URL={}", fake.base_url());
    let _ = stdout.flush();
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    fake.shutdown().await;
    ExitCode::SUCCESS
}
