//! A relay that is not one: a tiny HTTP server whose answers a test scripts, to play a
//! misbehaving peer (tampering, dropping, withholding, flooding) against a real relay.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake answers.
pub enum Answer {
    /// A JSON body with status 200.
    Json(String),
    /// A status with a JSON error.
    Status(u16),
    /// A status with a JSON error saying `reason`.
    Error(u16, String),
    /// 200 and an endless body (the test's client must cut it off).
    Endless,
}

type Handler = dyn Fn(&str, &[u8]) -> Answer + Send + Sync;

/// A scripted fake peer on 127.0.0.1.
pub struct FakePeer {
    pub addr: SocketAddr,
    calls: Arc<Mutex<HashMap<String, usize>>>,
    stop: Arc<AtomicBool>,
}

impl FakePeer {
    /// Serves `handler(path, body)` for every request until dropped.
    pub fn start(handler: impl Fn(&str, &[u8]) -> Answer + Send + Sync + 'static) -> FakePeer {
        Self::start_on(0, handler)
    }

    /// As [`FakePeer::start`], on a given port (0: any).
    pub fn start_on(
        port: u16,
        handler: impl Fn(&str, &[u8]) -> Answer + Send + Sync + 'static,
    ) -> FakePeer {
        Self::start_at("127.0.0.1", port, handler)
    }

    /// As [`FakePeer::start`], on another loopback address (`127.0.1.1`, say) and port.
    pub fn start_at(
        ip: &str,
        port: u16,
        handler: impl Fn(&str, &[u8]) -> Answer + Send + Sync + 'static,
    ) -> FakePeer {
        let listener = TcpListener::bind((ip, port)).expect("bind fake peer");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (c, s) = (calls.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (h, c, s) = (handler.clone(), c.clone(), s.clone());
                        std::thread::spawn(move || serve(stream, &*h, &c, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakePeer { addr, calls, stop }
    }

    /// How many requests reached `path`.
    pub fn calls(&self, path: &str) -> usize {
        self.calls.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    handler: &Handler,
    calls: &Mutex<HashMap<String, usize>>,
    stop: &AtomicBool,
) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        *calls.lock().unwrap().entry(path.clone()).or_default() += 1;
        let ok = match handler(&path, &body) {
            Answer::Json(text) => write!(
                writer,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            )
            .is_ok(),
            Answer::Status(code) => error(&mut writer, code, "scripted"),
            Answer::Error(code, reason) => error(&mut writer, code, &reason),
            Answer::Endless => {
                let _ = write!(
                    writer,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{{\"hashes\":[\""
                );
                let chunk = vec![b'a'; 64 * 1024];
                while !stop.load(Ordering::Relaxed) && writer.write_all(&chunk).is_ok() {}
                return;
            }
        };
        if !ok {
            return;
        }
    }
}

fn error(writer: &mut TcpStream, code: u16, reason: &str) -> bool {
    let text = serde_json::json!({ "error": reason }).to_string();
    write!(
        writer,
        "HTTP/1.1 {code} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    )
    .is_ok()
}
