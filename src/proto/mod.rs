//! Wire types of JASPER.md and PROTOCOL.md with their validation. Pure: no I/O, no clock.

pub mod hash;
pub mod jwe;
pub mod key;
pub mod packet;
pub mod rendezvous;
pub mod server;
pub mod status;
pub mod stun;
pub mod time;

pub use hash::PacketHash;
pub use key::{Fingerprint, PublicKey};
pub use packet::{Packet, PacketError, PacketRules};
pub use server::ServerEntry;
pub use status::Status;
