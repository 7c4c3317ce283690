//! Which addresses runbooks may never reach, and how names are resolved
//! so that they cannot lead there: the rule the shared client and the proxy
//! check both apply.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether an address is one no runbook may reach (cloud metadata).
pub fn denied(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 169 && v4.octets()[1] == 254,
        IpAddr::V6(v6) => {
            v6 == "fd00:ec2::254"
                .parse::<std::net::Ipv6Addr>()
                .expect("literal")
                || v6.to_ipv4_mapped().is_some_and(|v4| denied(IpAddr::V4(v4)))
        }
    }
}

/// How host names become addresses: the system resolver, or (in tests) a
/// table, so a name that resolves to a metadata address can be had.
#[async_trait::async_trait]
pub trait Lookup: Send + Sync {
    /// Every address of `host`.
    ///
    /// Fails when the name cannot be resolved.
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The system's resolver (`getaddrinfo`).
pub struct SystemLookup;

#[async_trait::async_trait]
impl Lookup for SystemLookup {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, 0))
            .await?
            .map(|a| a.ip())
            .collect())
    }
}

/// Drops denied addresses from every DNS answer.
pub(super) struct GuardedResolver(pub(super) Arc<dyn Lookup>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let lookup = self.0.clone();
        Box::pin(async move {
            let found = lookup.lookup(&host).await?;
            let ok: Vec<SocketAddr> = found
                .into_iter()
                .filter(|ip| !denied(*ip))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if ok.is_empty() {
                return Err(
                    format!("{host} resolves only to addresses runbooks may not reach").into(),
                );
            }
            Ok(Box::new(ok.into_iter()) as Addrs)
        })
    }
}
