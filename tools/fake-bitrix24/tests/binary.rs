//! The `b24-fake-bitrix24` binary: ready line, serving, clean exit on SIGTERM.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn binary_prints_its_url_serves_and_stops_on_sigterm() {
    bounded(async {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_b24-fake-bitrix24"))
            .args([
                "--app",
                "local.bin.app:bin-secret",
                "--portal",
                "binportal",
                "--token-prefix",
                "BINTOK",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next_line().await.unwrap().expect("ready line");
        let url = line
            .strip_prefix("BITRIX24_FAKE_URL=")
            .expect("the ready line")
            .to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");

        let (status, portals) = get(&format!("{url}/_fake/portals")).await;
        assert_eq!(status, 200);
        assert_eq!(portals[0]["member_id"], "binportal");
        assert_eq!(portals[0]["client_id"], "local.bin.app");

        let pid = child.id().unwrap().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "{status:?}");
        assert!(
            lines.next_line().await.unwrap().is_none(),
            "nothing else on stdout"
        );
    })
    .await
}
