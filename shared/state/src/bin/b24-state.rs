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

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let store = match DynamoStore::from_env().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("b24-state: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["create-table"] => b24_state::create_table(store.client(), store.table())
            .await
            .map(|()| eprintln!("b24-state: table {} ready", store.table())),
        ["dump", "--member-id", id] | ["dump", "--member-id=", id] => {
            store.portal_records(id).await.map(|records| {
                for r in records {
                    println!("{r}");
                }
            })
        }
        [dump, flag] if *dump == "dump" && flag.starts_with("--member-id=") => store
            .portal_records(&flag["--member-id=".len()..])
            .await
            .map(|records| {
                for r in records {
                    println!("{r}");
                }
            }),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
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
