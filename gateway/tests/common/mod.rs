//! Test harness: a real `sluice` process and a real in-process mock upstream,
//! both on ephemeral loopback ports; everything stops when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_perf::client::{build_request, Conn, Response};
use sluice_perf::mock::{MockOptions, MockServer, MockState};

pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The port that replaced `{port}` in the extra server YAML, if any.
    pub extra_port: u16,
    _config: tempfile_lite::TempFile,
}

mod tempfile_lite {
    /// A file removed on drop.
    pub struct TempFile(pub std::path::PathBuf);
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`.
/// A port can be taken between `free_port` and sluice's bind (by a mock
/// another test starts meanwhile, say); answering on it would then pass
/// for sluice, and the test would talk to the wrong server.
pub fn listens(pid: u32, port: u16) -> bool {
    // Not Linux: no /proc to ask; trust the answer on the port.
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return true;
    };
    let local = format!("0100007F:{port:04X}");
    // Columns: sl, local_address, rem_address, st (0A: listening), ..., inode.
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A"))
                .then(|| format!("socket:[{}]", f.get(9).unwrap_or(&"")))
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
    })
}

impl Gateway {
    /// Starts sluice with `yaml` (its `server:` section is generated; pass the rest).
    pub async fn start(yaml: &str, env: &[(&str, &str)]) -> Gateway {
        Self::start_with_server("", yaml, env).await
    }

    /// Like `start`, with `server_extra` appended to the `server:` section;
    /// `{port}` in it becomes a fresh free port (see `extra_port`).
    pub async fn start_with_server(
        server_extra: &str,
        yaml: &str,
        env: &[(&str, &str)],
    ) -> Gateway {
        for _ in 0..5 {
            if let Some(g) = Self::try_start(server_extra, yaml, env).await {
                return g;
            }
        }
        panic!("sluice did not start");
    }

    async fn try_start(server_extra: &str, yaml: &str, env: &[(&str, &str)]) -> Option<Gateway> {
        let (port, admin_port, extra_port) = (free_port(), free_port(), free_port());
        let server_extra = server_extra.replace("{port}", &extra_port.to_string());
        let path =
            std::env::temp_dir().join(format!("sluice-test-{}-{port}.yaml", std::process::id()));
        // Tests not about governance run as on a trusted network.
        let auth = if yaml.starts_with("auth:") || yaml.contains("\nauth:") {
            ""
        } else {
            "auth: none\n"
        };
        let text = format!(
            "server:\n  listen: 127.0.0.1:{port}\n  admin_listen: 127.0.0.1:{admin_port}\n  threads: 2\n  grace_period: 10s\n  access_log: false\n{server_extra}{auth}{yaml}"
        );
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut g = Gateway {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            extra_port,
            _config: tempfile_lite::TempFile(path),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = g.child.try_wait() {
                return None; // e.g. a port taken between probe and bind
            }
            if let Ok(r) = get(g.admin, "/healthz").await {
                if r.status == 200
                    && Conn::connect(g.addr).await.is_ok()
                    && listens(g.child.id(), port)
                    && listens(g.child.id(), admin_port)
                {
                    return Some(g);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = g.child.kill();
        None
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub async fn metrics(&self) -> String {
        String::from_utf8(get(self.admin, "/metrics").await.unwrap().body.to_vec()).unwrap()
    }

    /// `/metrics` once `sample` reaches `at_least` (requests are recorded
    /// just after their response is sent), or after 3 s.
    pub async fn metrics_when(&self, sample: &str, at_least: f64) -> String {
        self.metrics_until(sample, |v| v >= at_least).await
    }

    /// `/metrics` once `sample` is `value` (a gauge going back down), or
    /// after 3 s.
    pub async fn metrics_at(&self, sample: &str, value: f64) -> String {
        self.metrics_until(sample, |v| v == value).await
    }

    async fn metrics_until(&self, sample: &str, done: impl Fn(f64) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let m = self.metrics().await;
            if done(sample_or_zero(&m, sample)) || Instant::now() > deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn mock(options: MockOptions) -> MockServer {
    MockServer::start(MockState::new(options).recording())
        .await
        .unwrap()
}

/// Provider + model YAML pointing `demo` at `mock` (upstream model `upstream-demo`).
pub fn demo_config(mock: &MockServer, extra_provider: &str) -> String {
    format!(
        "providers:\n  up:\n    kind: openai_compatible\n    base_url: {}\n    forward_headers: [\"x-mock-*\"]\n{extra_provider}models:\n  demo:\n    targets: [ {{ provider: up, model: upstream-demo }} ]\n",
        mock.base_url()
    )
}

pub async fn get(
    addr: SocketAddr,
    path: &str,
) -> Result<Response, sluice_perf::client::ClientError> {
    let mut c = Conn::connect(addr).await?;
    c.send(&build_request("GET", path, "localhost", &[], b""))
        .await
}

pub async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut c = Conn::connect(addr).await.unwrap();
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    c.send(&build_request("POST", path, "localhost", &h, body))
        .await
        .unwrap()
}

pub fn chat_body(model: &str, content: &str, stream: bool) -> Vec<u8> {
    serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]})
        .to_string()
        .into_bytes()
}

/// `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|ev| ev.strip_prefix("data: ").map(str::to_string))
        .collect()
}

pub fn error_json(r: &Response) -> serde_json::Value {
    let v = r
        .json()
        .unwrap_or_else(|| panic!("not JSON: {:?}", String::from_utf8_lossy(&r.body)));
    assert!(v["error"]["message"].is_string(), "no error.message: {v}");
    assert!(v["error"]["type"].is_string(), "no error.type: {v}");
    v
}

/// The value of the first metrics sample line starting with `prefix`.
pub fn sample(metrics: &str, prefix: &str) -> f64 {
    sample_opt(metrics, prefix).unwrap_or_else(|| panic!("no sample {prefix}\n{metrics}"))
}

/// Like `sample`, with 0 for a series not yet exported.
pub fn sample_or_zero(metrics: &str, prefix: &str) -> f64 {
    sample_opt(metrics, prefix).unwrap_or(0.0)
}

fn sample_opt(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
