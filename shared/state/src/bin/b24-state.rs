//! `b24-state`: table administration for development, operations and the README demo.
//!
//! ```text
//! b24-state create-table              create TABLE_NAME (idempotent; TTL and stream on)
//! b24-state dump --member-id ID       print every record of the portal as JSON lines
//! b24-state purge --member-id ID      run the portal's pending CLEAN=1 purges to completion
//! ```
//! Reads `TABLE_NAME` and the standard AWS environment (`AWS_ENDPOINT_URL`, credentials, region).

use b24_state::{DynamoStore, MemberId};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// Table administration for the Bitrix24 receiver's DynamoDB table (TABLE_NAME).
#[derive(Parser)]
#[command(name = "b24-state", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the table with the code's schema (idempotent).
    CreateTable,
    /// Print every record of a portal as one JSON object per line.
    Dump {
        /// The portal's member_id.
        #[arg(long)]
        member_id: String,
    },
    /// Run a portal's pending CLEAN=1 purges to completion (resumes a stalled purge).
    Purge {
        /// The portal's member_id.
        #[arg(long)]
        member_id: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let store = match DynamoStore::from_env().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("b24-state: {e}");
            return ExitCode::from(2);
        }
    };
    let member = |id: &str| {
        MemberId::new(id).map_err(|e| {
            eprintln!("b24-state: {e}");
            ExitCode::from(2)
        })
    };
    let result = match cli.command {
        Command::CreateTable => b24_state::create_table(store.client(), store.table())
            .await
            .map(|()| eprintln!("b24-state: table {} ready", store.table())),
        Command::Dump { member_id } => {
            let m = match member(&member_id) {
                Ok(m) => m,
                Err(code) => return code,
            };
            store.portal_records(&m).await.map(|records| {
                for r in records {
                    println!("{r}");
                }
            })
        }
        Command::Purge { member_id } => {
            let m = match member(&member_id) {
                Ok(m) => m,
                Err(code) => return code,
            };
            b24_state::purge::run_pending(&store, &m, 5000, Duration::from_secs(30))
                .await
                .map(|steps| eprintln!("b24-state: purge of {m} complete ({steps} steps)"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("b24-state: {e}");
            ExitCode::FAILURE
        }
    }
}
