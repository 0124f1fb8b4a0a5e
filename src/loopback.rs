//! A node on this machine for the commands that start their own (`demo`, `bench`): a fresh
//! self-signed `localhost` certificate, the node's config on 127.0.0.1 (any port), and the
//! client transport that pins exactly that certificate.

use anyhow::Result;
use zerohop_control::tls::{self, Trust};
use zerohop_control::{NodeConfig, Transport};

/// A node config for 127.0.0.1 (a free port) serving TLS with a fresh self-signed `localhost`
/// certificate, the transport that pins it, and its SHA-256 fingerprint.
pub fn loopback_tls() -> Result<(NodeConfig, Transport, String)> {
    let identity = tls::self_signed(&["localhost".into()])?;
    let fp = identity.fingerprint();
    let transport = Transport::Tls { trust: Trust::Pin(fp.clone()), server_name: "localhost".into() };
    Ok((NodeConfig::new("127.0.0.1:0".parse()?, Some(tls::server_config(identity)?)), transport, fp))
}
