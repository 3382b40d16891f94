//! Test fixture for `jasper stun`: runs the real binary on loopback (port 0 for both
//! listeners, addresses read from its log), plus the clients the tests talk to it with: UDP
//! Binding, and a blocking TLS client that pins the certificate by fingerprint.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::Value;

use super::{jasper_in, wait_timeout};

/// A running `jasper stun` (or `jasper serve`) process.
pub struct StunServer {
    pub dir: tempfile::TempDir,
    pub udp: SocketAddr,
    pub tls: SocketAddr,
    /// What the process printed on stdout as the certificate fingerprint.
    pub printed_fingerprint: String,
    config_path: PathBuf,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl StunServer {
    /// Starts `jasper stun` with `[stun]` on loopback port 0 plus `extra` lines of that
    /// section.
    pub fn start(extra: &str) -> StunServer {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, extra)
    }

    /// Starts it in `dir` (reused across restarts).
    pub fn start_in(dir: tempfile::TempDir, extra: &str) -> StunServer {
        let config_path = dir.path().join("config.toml");
        let config = format!(
            "[stun]\nudp_listen = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{extra}\n",
            dir.path().join("stun").display()
        );
        std::fs::write(&config_path, config).expect("write config");
        let (child, udp, tls, printed_fingerprint, log) = spawn(&config_path, dir.path());
        StunServer {
            dir,
            udp,
            tls,
            printed_fingerprint,
            config_path,
            child,
            log,
        }
    }

    /// Kills it and starts it again with the same configuration and data.
    pub fn restart(mut self) -> StunServer {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, udp, tls, fp, log) = spawn(&self.config_path, self.dir.path());
        self.child = child;
        self.udp = udp;
        self.tls = tls;
        self.printed_fingerprint = fp;
        self.log = log;
        self
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        wait_timeout(&mut self.child, Duration::from_secs(20)).expect("stun exits after SIGTERM")
    }

    /// The directory holding the generated certificate.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("stun")
    }
}

impl Drop for StunServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- stun log ({}) -----\n{}", self.udp, self.log());
        }
    }
}

type Spawned = (Child, SocketAddr, SocketAddr, String, Arc<Mutex<String>>);

fn spawn(config: &Path, cwd: &Path) -> Spawned {
    let mut child = jasper_in(cwd)
        .args(["--config", config.to_str().unwrap(), "stun"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jasper stun");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addrs) = listening(&line)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addrs);
            }
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok((udp, tls)) => {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            let fingerprint = line
                .trim()
                .rsplit(' ')
                .next()
                .unwrap_or_default()
                .to_owned();
            assert!(
                line.starts_with("certificate fingerprint") && fingerprint.len() == 64,
                "stdout: {line:?}"
            );
            (child, udp, tls, fingerprint, log)
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stun did not start:\n{}", log.lock().unwrap());
        }
    }
}

/// The addresses of a "stun listening udp=… tls=…" log line.
pub fn listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let (_, rest) = line.split_once("stun listening ")?;
    let mut udp = None;
    let mut tls = None;
    for part in rest.split_whitespace() {
        if let Some(a) = part.strip_prefix("udp=") {
            udp = a.parse().ok();
        }
        if let Some(a) = part.strip_prefix("tls=") {
            tls = a.parse().ok();
        }
    }
    Some((udp?, tls?))
}

/// A UDP socket on loopback with a short read timeout.
pub fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

/// Sends `request` and returns the answer, if one comes within the socket's timeout.
pub fn exchange(socket: &UdpSocket, server: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    socket.send_to(request, server).unwrap();
    let mut buf = [0u8; 2048];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// A blocking TLS connection to the STUN service's TLS listener.
pub struct TlsClient {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    /// The server's leaf certificate (DER).
    pub certificate: Vec<u8>,
    pending: Vec<u8>,
}

impl TlsClient {
    /// Connects and completes the handshake, pinning `fingerprint` (hex).
    pub fn connect(addr: SocketAddr, fingerprint: &str) -> TlsClient {
        Self::try_connect(addr, fingerprint).expect("TLS handshake")
    }

    /// [`TlsClient::connect`], or the error when the server closes the connection (or the
    /// handshake fails).
    pub fn try_connect(addr: SocketAddr, fingerprint: &str) -> std::io::Result<TlsClient> {
        Self::try_connect_after(addr, fingerprint, Duration::ZERO)
    }

    /// [`TlsClient::try_connect`] that waits `pause` between the TCP connection and the TLS
    /// handshake.
    pub fn try_connect_after(
        addr: SocketAddr,
        fingerprint: &str,
        pause: Duration,
    ) -> std::io::Result<TlsClient> {
        let pin = jasper::config::parse_fingerprint(fingerprint).expect("hex fingerprint");
        let config = jasper::client::rendezvous::tls_config(Some(pin));
        let conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from("jasper-stun").unwrap(),
        )
        .unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        std::thread::sleep(pause);
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        let certificate = stream.conn.peer_certificates().unwrap()[0].to_vec();
        Ok(TlsClient {
            stream,
            certificate,
            pending: Vec::new(),
        })
    }

    /// The local address of the TCP connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.sock.local_addr().unwrap()
    }

    /// Sets how long reads wait.
    pub fn set_timeout(&mut self, t: Duration) {
        self.stream.sock.set_read_timeout(Some(t)).unwrap();
    }

    /// Writes raw bytes, waiting at most `timeout` for the server to take them.
    pub fn try_write(&mut self, bytes: &[u8], timeout: Duration) -> std::io::Result<()> {
        self.stream.sock.set_write_timeout(Some(timeout))?;
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Writes raw bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    /// Writes a JSON value as one line.
    pub fn send(&mut self, frame: &Value) {
        let mut line = frame.to_string();
        line.push('\n');
        self.write(line.as_bytes());
    }

    fn fill(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    /// The next line as JSON, or `None` at end of stream or timeout.
    pub fn recv(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).expect("server frames are JSON"));
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// The next STUN message (framed by its header), or `None`.
    pub fn recv_stun(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.pending.len() >= 20 {
                let len = 20 + usize::from(u16::from_be_bytes([self.pending[2], self.pending[3]]));
                if self.pending.len() >= len {
                    return Some(self.pending.drain(..len).collect());
                }
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Whether the server closed the stream (reads end) within the read timeout.
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    );
                }
            }
        }
    }
}
