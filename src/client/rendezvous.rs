//! The client side of the rendezvous (src/proto/rendezvous.rs): a TLS stream to the STUN
//! service, authentication by signing its challenge, then offers and answers as JSON lines.
//!
//! The server's certificate is accepted when its SHA-256 fingerprint equals the pinned one; with
//! no pin, the first certificate seen is remembered by the caller and pinned from then on
//! (trust on first use, as SSH does). The TLS handshake's signatures are always checked.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::db::{ClientDb, DbError};
use crate::config::parse_fingerprint;
use crate::crypto::{Identity, challenge};
use crate::proto::ServerEntry;
use crate::proto::rendezvous::{ClientFrame, MAX_FRAME_BYTES, ServerFrame, auth_input};

/// Why the rendezvous failed.
#[derive(Debug, thiserror::Error)]
pub enum RendezvousError {
    /// The address is not host:port.
    #[error("rendezvous {0:?} is not host:port")]
    Address(String),
    /// TCP or TLS failed.
    #[error("cannot reach the rendezvous at {addr}: {reason}")]
    Unreachable {
        /// host:port.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The certificate is not the pinned one.
    #[error(
        "the rendezvous at {addr} presented certificate {seen}, not the pinned {pinned}; \
         if its owner changed it on purpose, update [client] rendezvous_fingerprint"
    )]
    WrongCertificate {
        /// host:port.
        addr: String,
        /// Fingerprint seen.
        seen: String,
        /// Fingerprint expected.
        pinned: String,
    },
    /// The server said no.
    #[error("the rendezvous refused: {0}")]
    Refused(String),
    /// The server broke the protocol or closed the stream.
    #[error("the rendezvous broke off: {0}")]
    Protocol(String),
    /// Too slow.
    #[error("the rendezvous did not answer in time")]
    Timeout,
}

/// The rendezvous certificate to insist on at `addr`: the configured pin, else the one
/// remembered from the first connection (trust on first use), else none.
pub fn pin_for(
    db: &ClientDb,
    configured: Option<&str>,
    addr: &str,
) -> Result<Option<[u8; 32]>, DbError> {
    if let Some(text) = configured {
        return Ok(parse_fingerprint(text));
    }
    Ok(db
        .setting(&format!("rendezvous-cert:{addr}"))?
        .and_then(|t| parse_fingerprint(&t)))
}

/// Remembers the certificate first seen at `addr`.
pub fn remember(db: &ClientDb, addr: &str, fingerprint: &[u8; 32]) -> Result<(), DbError> {
    db.set_setting(&format!("rendezvous-cert:{addr}"), &hex(fingerprint))
}

/// Lowercase hex of a fingerprint.
pub fn hex(fp: &[u8; 32]) -> String {
    fp.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug)]
struct PinnedOrFirst {
    pinned: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
    /// The fingerprint of a certificate refused for not being the pinned one.
    refused: std::sync::Mutex<Option<[u8; 32]>>,
}

impl ServerCertVerifier for PinnedOrFirst {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        match self.pinned {
            Some(pin) if pin != seen => {
                *self.refused.lock().expect("not poisoned") = Some(seen);
                Err(rustls::Error::General(format!(
                    "certificate {} is not the pinned one",
                    hex(&seen)
                )))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The TLS client configuration for a rendezvous: the certificate whose SHA-256 is `pinned`
/// (none: any, for trust on first use), the handshake's signatures always checked.
pub fn tls_config(pinned: Option<[u8; 32]>) -> rustls::ClientConfig {
    with_verifier(pinned).0
}

fn with_verifier(pinned: Option<[u8; 32]>) -> (rustls::ClientConfig, Arc<PinnedOrFirst>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedOrFirst {
        pinned,
        provider: provider.clone(),
        refused: std::sync::Mutex::new(None),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    (config, verifier)
}

/// An open TLS stream to the rendezvous.
pub struct Rendezvous {
    reader: BufReader<ReadHalf<TlsStream<TcpStream>>>,
    writer: WriteHalf<TlsStream<TcpStream>>,
    certificate: Vec<u8>,
    addr: String,
    /// A frame read in part (kept so that `recv` can be cancelled and called again).
    partial: Vec<u8>,
    /// When a frame last went out (the server closes sessions that send nothing for long).
    last_sent: std::time::Instant,
}

/// Time allowed to write one frame: a server that stops reading is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

impl Rendezvous {
    /// Connects over TLS; `pinned` is the certificate fingerprint to insist on (none: accept
    /// the first, whose fingerprint [`Rendezvous::fingerprint`] then tells).
    pub async fn connect(
        addr: &str,
        pinned: Option<[u8; 32]>,
        timeout: Duration,
    ) -> Result<Self, RendezvousError> {
        let entry: ServerEntry = addr
            .parse()
            .map_err(|_| RendezvousError::Address(addr.to_owned()))?;
        let (config, verifier) = with_verifier(pinned);
        let name = match &entry.host {
            crate::proto::server::Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            crate::proto::server::Host::Domain(d) => ServerName::try_from(d.clone())
                .map_err(|_| RendezvousError::Address(addr.to_owned()))?,
        };
        let unreachable = |reason: String| RendezvousError::Unreachable {
            addr: addr.to_owned(),
            reason,
        };
        let work = async {
            let tcp = TcpStream::connect(entry.authority())
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| {
                    let refused = *verifier.refused.lock().expect("not poisoned");
                    match (pinned, refused) {
                        (Some(pin), Some(seen)) => RendezvousError::WrongCertificate {
                            addr: addr.to_owned(),
                            seen: hex(&seen),
                            pinned: hex(&pin),
                        },
                        _ => unreachable(e.to_string()),
                    }
                })
        };
        let tls = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| RendezvousError::Timeout)??;
        let certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .ok_or_else(|| RendezvousError::Protocol("no server certificate".into()))?;
        let (read, writer) = tokio::io::split(tls);
        Ok(Self {
            reader: BufReader::new(read),
            writer,
            certificate,
            addr: addr.to_owned(),
            partial: Vec::new(),
            last_sent: std::time::Instant::now(),
        })
    }

    /// How long since a frame last went out.
    pub fn since_sent(&self) -> Duration {
        self.last_sent.elapsed()
    }

    /// The SHA-256 fingerprint of the server's certificate.
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(&self.certificate).into()
    }

    /// The address it was reached at.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one frame.
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<(), RendezvousError> {
        self.send_raw(frame.to_line().as_bytes()).await
    }

    /// Asks for our address as the server sees it: a STUN Binding request on this stream.
    pub async fn binding(&mut self) -> Result<std::net::SocketAddr, RendezvousError> {
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).expect("the operating system's random source works");
        self.send_raw(&crate::proto::stun::binding_request(&id))
            .await?;
        let answer = self.recv_stun().await?;
        crate::proto::stun::parse_binding_response(&answer, &id)
            .ok_or_else(|| RendezvousError::Protocol("an unusable STUN answer".into()))
    }

    /// Sends raw bytes (a STUN message, or a frame's line).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), RendezvousError> {
        let write = async {
            self.writer.write_all(bytes).await?;
            self.writer.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => {
                self.last_sent = std::time::Instant::now();
                Ok(())
            }
            Ok(Err(e)) => Err(RendezvousError::Protocol(e.to_string())),
            Err(_) => Err(RendezvousError::Protocol(format!(
                "it took nothing we sent for {}s",
                WRITE_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Reads one STUN message (RFC 8489 §6.2.2 framing) from the stream.
    pub async fn recv_stun(&mut self) -> Result<Vec<u8>, RendezvousError> {
        let broken = |e: std::io::Error| RendezvousError::Protocol(e.to_string());
        let mut header = [0u8; crate::proto::stun::HEADER_BYTES];
        self.reader.read_exact(&mut header).await.map_err(broken)?;
        let len = crate::proto::stun::framed_length(&header)
            .map_err(|e| RendezvousError::Protocol(format!("a bad STUN answer ({e:?})")))?;
        let mut message = header.to_vec();
        message.resize(len, 0);
        self.reader
            .read_exact(&mut message[crate::proto::stun::HEADER_BYTES..])
            .await
            .map_err(broken)?;
        Ok(message)
    }

    /// Receives the next frame; `Err` when the stream ends or breaks the protocol.
    /// Cancel-safe: a frame read in part is kept for the next call.
    pub async fn recv(&mut self) -> Result<ServerFrame, RendezvousError> {
        let room = (MAX_FRAME_BYTES as u64).saturating_sub(self.partial.len() as u64);
        let n = (&mut self.reader)
            .take(room)
            .read_until(b'\n', &mut self.partial)
            .await
            .map_err(|e| RendezvousError::Protocol(e.to_string()))?;
        if self.partial.last() != Some(&b'\n') {
            return Err(RendezvousError::Protocol(if n == 0 && room > 0 {
                "the server closed the stream".into()
            } else {
                "an oversized frame".into()
            }));
        }
        let line = std::mem::take(&mut self.partial);
        serde_json::from_slice(&line)
            .map_err(|e| RendezvousError::Protocol(format!("an unreadable frame ({e})")))
    }

    /// Proves we hold `me`'s key; afterwards offers and answers for it reach this stream.
    pub async fn authenticate(
        &mut self,
        me: &Identity,
        timeout: Duration,
    ) -> Result<(), RendezvousError> {
        let work = async {
            self.send(&ClientFrame::Hello {
                key: me.public().canonical().to_owned(),
            })
            .await?;
            let nonce = match self.recv().await? {
                ServerFrame::Challenge { nonce } => nonce,
                ServerFrame::Error { error, .. } => return Err(RendezvousError::Refused(error)),
                other => return Err(unexpected(&other)),
            };
            let nonce = crate::crypto::jose::unb64(&nonce)
                .ok_or_else(|| RendezvousError::Protocol("an unreadable challenge".into()))?;
            let signature = challenge::sign(me, &auth_input(&nonce, &self.certificate));
            self.send(&ClientFrame::Auth { signature }).await?;
            match self.recv().await? {
                ServerFrame::Ready { .. } => Ok(()),
                ServerFrame::Error { error, .. } => Err(RendezvousError::Refused(error)),
                other => Err(unexpected(&other)),
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| RendezvousError::Timeout)?
    }
}

/// The error for a frame that has no place at this step.
pub fn unexpected(frame: &ServerFrame) -> RendezvousError {
    RendezvousError::Protocol(format!(
        "unexpected {}",
        serde_json::to_value(frame).map_or_else(|_| "frame".into(), |v| v["op"].to_string())
    ))
}
