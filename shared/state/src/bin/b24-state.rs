//! `b24-state`: table administration for development and the README demo.
//!
//! ```text
//! b24-state create-table              create TABLE_NAME (idempotent; TTL on)
//! b24-state dump --member-id ID       print every record of the portal as JSON lines
//! ```
//! Reads `TABLE_NAME` and the standard AWS environment (`AWS_ENDPOINT_URL`, credentials, region).

use b24_state::DynamoStore;
use std::process::ExitCode;

const USAGE: &str = "usage: b24-state create-table | dump --member-id ID";

enum Command {
    CreateTable,
    Dump(String),
}

fn parse(args: &[String]) -> Option<Command> {
    match args {
        [c] if c == "create-table" => Some(Command::CreateTable),
        [d, f, id] if d == "dump" && f == "--member-id" => Some(Command::Dump(id.clone())),
        [d, f] if d == "dump" && f.starts_with("--member-id=") => {
            Some(Command::Dump(f["--member-id=".len()..].to_string()))
        }
        _ => None,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = parse(&args) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let store = match DynamoStore::from_env().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("b24-state: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::CreateTable => b24_state::create_table(store.client(), store.table())
            .await
            .map(|()| eprintln!("b24-state: table {} ready", store.table())),
        Command::Dump(id) => store.portal_records(&id).await.map(|records| {
            for r in records {
                println!("{r}");
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("b24-state: {e}");
            ExitCode::FAILURE
        }
    }
}
