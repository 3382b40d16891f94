//! Jasper: a relay mesh for anonymous, end-to-end encrypted messaging (JASPER.md), in one crate.
//!
//! `proto` holds the wire types, `relay` the REST relay, `stun` the STUN service and rendezvous,
//! `http` the server edge shared by the servers, `redb_file` what redb's errors say about
//! a database file, `config` the configuration file and `cli` the command line over all of it.

#![warn(missing_docs)]

pub mod cli;
pub mod client;
pub mod config;
pub mod crypto;
pub mod http;
pub mod netlimits;
pub mod proto;
pub mod redb_file;
pub mod relay;
pub mod stun;
