//! A real `redis-server` on a free loopback port, in its own directory, that a test can kill
//! with SIGKILL and start again on the same files.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A redis-server process and its data directory.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    settings: Vec<String>,
    /// Whether `port` speaks TLS only.
    tls: bool,
    child: Option<Child>,
}

/// PEM files for Redis over TLS, in a temporary directory: a CA, a server certificate for
/// 127.0.0.1 and localhost signed by it, and a client certificate signed by it.
pub struct TlsFiles {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// Makes a fresh CA and the two certificates it signs.
    pub fn make() -> TlsFiles {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "jasper test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = write("ca.pem", ca_params.self_signed(&ca_key).unwrap().pem());
        let issuer = Issuer::new(ca_params, ca_key);
        let signed = |names: Vec<String>, stem: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            (
                write(&format!("{stem}.pem"), cert.pem()),
                write(&format!("{stem}-key.pem"), key.serialize_pem()),
            )
        };
        let (server_cert, server_key) =
            signed(vec!["127.0.0.1".into(), "localhost".into()], "server");
        let (client_cert, client_key) = signed(vec!["jasper-relay".into()], "client");
        TlsFiles {
            dir,
            ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }
}

impl RedisServer {
    /// Starts a server as the Redis engine requires (`appendonly yes`, `appendfsync always`).
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with more `--name value` settings after the durable defaults.
    pub fn start_with(settings: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = RedisServer {
            port: free_port(),
            dir,
            settings: settings.iter().map(|s| s.to_string()).collect(),
            tls: false,
            child: None,
        };
        server.spawn();
        server
    }

    /// Starts a server that speaks only TLS on its port, with `tls`'s server certificate, and
    /// asks clients for a certificate signed by `tls`'s CA (Redis's default).
    pub fn start_tls(tls: &TlsFiles) -> RedisServer {
        let path = |p: &PathBuf| p.display().to_string();
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            settings: vec![
                "--tls-cert-file".into(),
                path(&tls.server_cert),
                "--tls-key-file".into(),
                path(&tls.server_key),
                "--tls-ca-cert-file".into(),
                path(&tls.ca),
                "--tls-auth-clients".into(),
                "yes".into(),
            ],
            tls: true,
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let ports: [&str; 4] = if self.tls {
            ["--port", "0", "--tls-port", &port]
        } else {
            ["--port", &port, "--tls-port", "0"]
        };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1"])
            .args(ports)
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(&self.settings)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (tests/run.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        let ready = |server: &RedisServer| {
            if server.tls {
                TcpStream::connect(("127.0.0.1", server.port)).is_ok()
            } else {
                server.command(&["PING"]).as_deref() == Some("+PONG")
            }
        };
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis_url` for this server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// The `[relay]` lines that store packets here under `prefix`.
    pub fn relay_config(&self, prefix: &str) -> String {
        format!(
            "store = \"redis\"\nredis_url = \"{}\"\nredis_prefix = \"{prefix}\"",
            self.url()
        )
    }

    /// Kills the server with SIGKILL: no chance to write anything more.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and files.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Sends one command (inline, space-free arguments) and returns the first line of the
    /// answer, or `None` when the server cannot be reached.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end().to_owned();
        // A bulk string: return its contents instead of the length line.
        if let Some(len) = line.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body).ok()?;
            return Some(String::from_utf8_lossy(&body[..len]).into_owned());
        }
        Some(line)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}
