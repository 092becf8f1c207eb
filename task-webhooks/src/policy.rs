//! Which receivers may be called: http and https only, and, unless the operator allows
//! them, no loopback, private, link-local or otherwise non-public address, checked after DNS
//! resolution, on every connection (a resolver that drops such addresses is what the HTTP
//! client connects through, so a name that resolves differently later is checked again).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::WebhookError;

/// How long a name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The receivers a deployment allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Also allow loopback, private and link-local addresses (tests, or receivers inside the
    /// operator's own network).
    pub allow_private: bool,
}

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // Carrier-grade NAT 100.64/10, IETF 192.0.0/24, benchmarking 198.18/15, reserved 240/4.
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10, documentation.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        || first == 0x2001 && ip.segments()[1] == 0x0db8)
}

impl UrlPolicy {
    /// Checks a subscription's URL: its scheme and host, and every address the host resolves
    /// to now. The error names the URL and the reason.
    pub async fn check(&self, raw: &str) -> Result<url::Url, WebhookError> {
        let invalid = |reason: String| WebhookError::InvalidUrl {
            url: raw.chars().take(300).collect(),
            reason,
        };
        let url = url::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "the scheme must be http or https, not {:?}",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("credentials in the URL are not allowed".into()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid("the URL has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs = resolve(&host, port).await.map_err(&invalid)?;
        self.allowed(raw, addrs).map(|_| url)
    }

    /// `addrs` without the ones the policy refuses; an error if none is left.
    fn allowed(&self, raw: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, WebhookError> {
        if self.allow_private {
            return Ok(addrs);
        }
        if let Some(refused) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(WebhookError::ForbiddenAddress {
                url: raw.chars().take(300).collect(),
                address: refused.ip(),
            });
        }
        Ok(addrs)
    }

    /// The resolver the HTTP client connects through: it applies the policy to every name.
    pub fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver { policy: *self })
    }
}

/// Resolves `host` (a name or an address literal) within [`RESOLVE_TIMEOUT`].
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| format!("resolving {host:?} took more than {RESOLVE_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .collect::<Vec<_>>();
    if found.is_empty() {
        return Err(format!("{host:?} resolves to no address"));
    }
    Ok(found)
}

/// A DNS resolver that refuses names resolving to addresses the policy forbids.
#[derive(Debug)]
pub struct GuardedResolver {
    policy: UrlPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // The port is set by the connector; 0 here.
            let addrs = resolve(&host, 0).await?;
            let addrs = policy
                .allowed(&host, addrs)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().expect("an address")), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().expect("an address")), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_after_resolution() {
        let strict = UrlPolicy::default();
        for (url, expect) in [
            ("ftp://example.com/x", "scheme must be http or https"),
            ("not a url", "relative URL without a base"),
            ("http://user:pw@example.com/", "credentials"),
            ("http://127.0.0.1:9/hook", "127.0.0.1"),
            ("http://[::1]/hook", "::1"),
            ("http://localhost:8080/hook", "private"),
            ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ] {
            let err = strict.check(url).await.expect_err(url).to_string();
            assert!(err.contains(expect), "{url}: {err}");
        }
        let open = UrlPolicy {
            allow_private: true,
        };
        assert!(open.check("http://127.0.0.1:9/hook").await.is_ok());
    }
}
