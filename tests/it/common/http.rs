//! Driving `serve`'s HTTP API from tests: one request per connection, and `serve` with the API
//! on and tokens made with the CLI.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::TestDb;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18080)
}

/// A response: status, headers (lower-case names) and the body as JSON (`Null` if not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

/// One HTTP/1.1 request on a new connection.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect: {e}"));
    // Longer than the server's own 30-second bound, which answers 503.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let (status, headers, body) = read_response(&mut stream);
    Reply {
        status,
        headers: headers.into_iter().collect(),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
    }
}

/// A response read to the end of the connection: status, headers (lower-case names, in order,
/// repeated ones kept) and body text.
pub fn read_response(stream: &mut TcpStream) -> (u16, Vec<(String, String)>, String) {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// `serve` with the API on, and a write and a read token made with the CLI.
pub struct Api {
    child: Child,
    pub log: std::path::PathBuf,
    pub port: u16,
    /// The health and metrics address's port.
    pub http_port: u16,
    pub write: String,
    pub read: String,
}

impl Api {
    pub fn start(db: &TestDb, time_travel: bool) -> Api {
        Api::start_with(db, time_travel, &[])
    }

    /// `serve` with these environment variables too.
    pub fn start_with(db: &TestDb, time_travel: bool, env: &[(&str, &str)]) -> Api {
        Api::launch(db, free_port(), time_travel, env)
    }

    /// `serve` with the API on `port`, without time travel.
    pub fn start_on(db: &TestDb, port: u16, env: &[(&str, &str)]) -> Api {
        Api::launch(db, port, false, env)
    }

    fn launch(db: &TestDb, port: u16, time_travel: bool, env: &[(&str, &str)]) -> Api {
        let token = |name: &str, scope: &str| {
            db.ok(
                None,
                &["api-token", "create", "--name", name, "--scope", scope],
            )["token"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| panic!("a token"))
        };
        let n = std::process::id();
        let write = token(&format!("host-{n}-{}", free_port()), "write");
        let read = token(&format!("reader-{n}-{}", free_port()), "read");
        // Any free port but the API's (which is not bound yet when the caller chose it).
        let http_port = (0..100)
            .map(|_| free_port())
            .find(|p| *p != port)
            .unwrap_or(port + 1);
        // A schedule given in `env` replaces the default (never within a test's time).
        let schedule = env
            .iter()
            .find(|(k, _)| *k == "PLAN_INVOICER_SCHEDULE")
            .map_or("0 0 0 1 1 *", |(_, v)| *v);
        let mut cmd = db.command();
        cmd.env("STRIPE_API_KEY", "sk_test_api")
            .env("RUST_LOG", "info")
            .args([
                "serve",
                "--schedule",
                schedule,
                "--http-addr",
                &format!("127.0.0.1:{http_port}"),
                "--api-addr",
                &format!("127.0.0.1:{port}"),
            ]);
        if time_travel {
            cmd.arg("--allow-time-travel");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log = std::env::temp_dir().join(format!("plan-invoicer-api-{n}-{port}.log"));
        let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log file: {e}"));
        let child = cmd
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn serve: {e}"));
        let api = Api {
            child,
            log,
            port,
            http_port,
            write,
            read,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the API did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        api
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        now: Option<&str>,
        body: &Value,
    ) -> Reply {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(now) = now {
            headers.push(("Plan-Invoicer-Now", now));
        }
        let raw = if body.is_null() {
            vec![]
        } else {
            headers.push(("Content-Type", "application/json"));
            body.to_string().into_bytes()
        };
        request(self.port, method, path, &headers, &raw)
    }

    pub fn post(&self, path: &str, now: Option<&str>, body: Value) -> Reply {
        self.call("POST", path, &self.write, now, &body)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, &self.read, None, &Value::Null)
    }

    /// A successful POST's body.
    pub fn ok(&self, path: &str, now: Option<&str>, body: Value) -> Value {
        let r = self.post(path, now, body);
        assert_eq!(r.status, 200, "POST {path}: {r:?}");
        r.body
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "serve's last log lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
