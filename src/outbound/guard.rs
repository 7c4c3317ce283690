//! Which addresses runbooks may never reach, and how names are resolved
//! so that they cannot lead there: the rule the shared client and the proxy
//! check both apply.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Whether an address is one no runbook may reach (cloud metadata).
pub fn denied(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 169 && v4.octets()[1] == 254,
        IpAddr::V6(v6) => {
            v6 == "fd00:ec2::254"
                .parse::<std::net::Ipv6Addr>()
                .expect("literal")
                || v6.to_ipv4_mapped().is_some_and(|v4| denied(IpAddr::V4(v4)))
                // IPv4-compatible (::a9fe:a9fe) and NAT64 (64:ff9b::/96) spellings.
                || v6.to_ipv4().is_some_and(|v4| denied(IpAddr::V4(v4)))
                || (v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
                    && denied(IpAddr::V4(std::net::Ipv4Addr::from_bits(
                        v6.to_bits() as u32
                    ))))
        }
    }
}

/// Whether `url` may be called by a runbook allowing the hosts in `allow`
/// (`api.example.com`, `*.zendesk.com`, `host:8443`): http or https, never a
/// metadata address, and a host (and port, when the rule names one) the
/// list allows.
///
/// Fails with a sentence naming the host and what to change.
pub fn permitted<'a>(url: &Url, mut allow: impl Iterator<Item = &'a String>) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{url}: only http and https URLs can be called"));
    }
    let host = url
        .host()
        .ok_or_else(|| format!("{url}: the URL has no host"))?;
    let name = match host {
        Host::Ipv4(ip) if denied(IpAddr::V4(ip)) => {
            return Err(format!(
                "{url}: {ip} is a cloud metadata address; runbooks may never call it"
            ));
        }
        Host::Ipv6(ip) if denied(IpAddr::V6(ip)) => {
            return Err(format!(
                "{url}: {ip} is a cloud metadata address; runbooks may never call it"
            ));
        }
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
        Host::Domain(d) => d.to_ascii_lowercase(),
    };
    let port = url.port_or_known_default().unwrap_or(0);
    let allowed = allow.any(|rule| {
        let (pattern, rule_port) = match rule.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, p.parse::<u16>().ok()),
            _ => (rule.as_str(), None),
        };
        let host_ok = match pattern.strip_prefix("*.") {
            Some(suffix) => name.ends_with(&format!(".{suffix}")),
            None => pattern.eq_ignore_ascii_case(&name),
        };
        host_ok && rule_port.is_none_or(|p| p == port)
    });
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "{url}: host {name} is not in this runbook's http.allow; add \"{name}\" to `http: {{ allow: [...] }}`"
        ))
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
