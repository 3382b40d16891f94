//! `jasper stun-check`: our public address as the STUN service sees it, asked over its TLS
//! port (the rendezvous) and, when `[client] stun` is set, over UDP as ICE will ask.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use super::StunCheckArgs;
use super::chat::open_rendezvous;
use crate::client::ClientDb;
use crate::client::rendezvous::hex;
use crate::config::Config;
use crate::proto::stun::{MAX_MESSAGE_BYTES, binding_request, parse_binding_response};

/// Time given to each of the three tries over UDP.
const UDP_TRY: Duration = Duration::from_millis(700);

/// Asks the UDP service, retrying a lost datagram twice; datagrams that are not the answer
/// (other transactions) do not make a try last longer.
fn udp_binding(server: &str, bind: SocketAddr) -> anyhow::Result<SocketAddr> {
    let socket = UdpSocket::bind(SocketAddr::new(bind.ip(), 0))
        .with_context(|| format!("cannot open a UDP socket on {}", bind.ip()))?;
    socket
        .connect(server)
        .with_context(|| format!("cannot reach {server} over UDP"))?;
    let mut id = [0u8; 12];
    getrandom::fill(&mut id).expect("the operating system's random source works");
    let request = binding_request(&id);
    let mut buf = [0u8; MAX_MESSAGE_BYTES];
    for _ in 0..3 {
        socket.send(&request)?;
        let try_ends = std::time::Instant::now() + UDP_TRY;
        loop {
            let left = try_ends.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left))?;
            let Ok(n) = socket.recv(&mut buf) else { break };
            if let Some(addr) = parse_binding_response(&buf[..n], &id) {
                return Ok(addr);
            }
        }
    }
    Err(crate::client::rendezvous::RendezvousError::Unreachable {
        addr: server.to_owned(),
        reason: "no STUN answer over UDP".into(),
    }
    .into())
}

/// Runs `jasper stun-check`.
pub fn run(config: &Config, args: &StunCheckArgs) -> anyhow::Result<()> {
    let Some(rendezvous) = config.client.rendezvous.clone() else {
        return Err(crate::config::ConfigError::Invalid(
            "stun-check needs [client] rendezvous = \"host:port\" (the TLS port of a `jasper \
             stun` service)"
                .into(),
        )
        .into());
    };
    let db = ClientDb::open(&config.client.data_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (tls_address, certificate) = runtime.block_on(async {
        let mut connection = open_rendezvous(config, &db, &rendezvous).await?;
        let address = tokio::time::timeout(config.client.request_timeout, connection.binding())
            .await
            .map_err(|_| crate::client::rendezvous::RendezvousError::Timeout)??;
        anyhow::Ok((address, hex(&connection.fingerprint())))
    })?;
    let udp = match &config.client.stun {
        Some(server) => Some((server.clone(), udp_binding(server, config.client.rtc_bind)?)),
        None => None,
    };
    if args.json {
        println!(
            "{}",
            json!({
                "tls": {"server": rendezvous, "address": tls_address.to_string(),
                        "certificate": certificate},
                "udp": udp.as_ref().map(|(server, address)| json!({
                    "server": server, "address": address.to_string(),
                })),
            })
        );
        return Ok(());
    }
    println!("{tls_address}\tseen by {rendezvous} over TLS (certificate {certificate})");
    match &udp {
        Some((server, address)) => {
            println!("{address}\tseen by {server} over UDP (what ICE will offer)");
            if address.ip() != tls_address.ip() {
                println!("note: the two services see different addresses");
            }
        }
        None => println!("(set [client] stun to check the UDP service too)"),
    }
    Ok(())
}
