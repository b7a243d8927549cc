//! SSRF protection: webhook URLs are typed in by users, so without a guard a webhook could
//! be aimed at the cloud metadata service, the database, or an admin port on localhost,
//! and the delivery log would show the attacker the answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

use crate::DeliveryError;

/// Decides which webhook targets may be contacted.
///
/// `Default` refuses private targets: the safe setting must be the one you get without
/// thinking. `allow_private` exists for self-hosted setups whose receivers live on the
/// same network (and for tests on 127.0.0.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetGuard {
    pub allow_private: bool,
}

/// A URL the guard accepted, with the addresses it was checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTarget {
    /// The parsed URL.
    pub url: Url,
    /// The host as written in the URL (a domain, or an IP literal; IPv6 without brackets).
    pub host: String,
    /// Every address the host resolved to (one, for an IP literal), with the URL's port.
    pub addrs: Vec<SocketAddr>,
}

impl TargetGuard {
    /// Parses `url` (http and https only), resolves its host, and refuses it when any
    /// resolved address is not public (see [`is_public_ip`]) unless `allow_private`.
    ///
    /// *Any* rather than *all*: a name resolving to one public and one private address
    /// would otherwise let the connection land on the private one.
    ///
    /// The check alone does not stop DNS rebinding (a second lookup at connect time may
    /// answer differently); [`crate::WebhookSender`] therefore applies the same rule to
    /// the addresses it actually connects to.
    pub async fn check(&self, url: &str) -> Result<ResolvedTarget, DeliveryError> {
        let parsed = Url::parse(url.trim()).map_err(|e| DeliveryError::InvalidUrl(format!("{url}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(DeliveryError::InvalidUrl(format!("{url}: only http and https URLs can receive webhooks")));
        }
        let Some(port) = parsed.port_or_known_default() else {
            return Err(DeliveryError::InvalidUrl(format!("{url}: no port")));
        };
        let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
            return Err(DeliveryError::InvalidUrl(format!("{url}: no host")));
        };
        // The URL parser has already normalised IP literals (`0x7f.1` is `127.0.0.1`);
        // IPv6 literals keep their brackets in `host_str`.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let addrs = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => resolve(&host, port).await?,
        };
        self.admit(&host, &addrs)?;
        Ok(ResolvedTarget { url: parsed, host, addrs })
    }

    /// The check made when a URL is stored (an automation or a subscription is saved): what
    /// [`TargetGuard::check`] refuses is refused, with the reason, rather than failing every
    /// delivery attempt until it is dead-lettered. A host name that does not resolve now,
    /// or not within a few seconds, is accepted: DNS can change before the first delivery,
    /// and every delivery checks again.
    pub async fn check_before_storing(&self, url: &str) -> Result<(), DeliveryError> {
        match tokio::time::timeout(STORE_TIME_RESOLVE_WAIT, self.check(url)).await {
            Ok(Ok(_)) | Ok(Err(DeliveryError::Resolve(_))) | Err(_) => Ok(()),
            Ok(Err(refused)) => Err(refused),
        }
    }

    /// The refusal rule, shared by [`TargetGuard::check`] and the connect-time resolver.
    pub(crate) fn admit(&self, host: &str, addrs: &[SocketAddr]) -> Result<(), DeliveryError> {
        if self.allow_private {
            return Ok(());
        }
        for addr in addrs {
            if let Some(kind) = non_public_kind(addr.ip()) {
                let ip = addr.ip();
                let what = if host == ip.to_string() { format!("{ip} is") } else { format!("{host} resolves to {ip}, which is") };
                return Err(DeliveryError::Refused(format!("{what} a non-public address ({kind}); delivery to private addresses is disabled")));
            }
        }
        Ok(())
    }
}

/// How long [`TargetGuard::check_before_storing`] waits for a name to resolve: storing an
/// automation must not hang on a slow resolver.
const STORE_TIME_RESOLVE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

pub(crate) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, DeliveryError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await.map_err(|e| DeliveryError::Resolve(format!("{host}: {e}")))?.collect();
    if addrs.is_empty() {
        return Err(DeliveryError::Resolve(format!("{host}: no addresses")));
    }
    Ok(addrs)
}

/// Whether `ip` is an address on the public internet, the only kind a webhook may reach
/// when private targets are not allowed.
///
/// Refused: loopback, private (10/8, 172.16/12, 192.168/16), link-local (169.254/16,
/// fe80::/10), shared/CGNAT (100.64/10), unique-local (fc00::/7), unspecified, broadcast,
/// multicast, documentation and benchmarking ranges, 0/8, 240/4 and the other IETF special
/// ranges, and IPv6 addresses that embed an IPv4 one (mapped, compatible, NAT64, 6to4)
/// when the embedded address is refused — otherwise `::ffff:127.0.0.1` would be a way
/// around the IPv4 rules. IPv6 outside 2000::/3 is refused too: nothing public lives
/// there.
pub fn is_public_ip(ip: IpAddr) -> bool {
    non_public_kind(ip).is_none()
}

/// Why an address is not public, for the refusal message; `None` when it is public.
fn non_public_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let kind = match (a, b, c) {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_broadcast() => "broadcast",
        (0, _, _) => "reserved, 0.0.0.0/8",
        (10, _, _) => "private",
        (100, 64..=127, _) => "shared address space (CGNAT), private",
        (127, _, _) => "loopback, private",
        (169, 254, _) => "link-local, private",
        (172, 16..=31, _) => "private",
        (192, 0, 0) => "IETF protocol assignments",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast",
        (192, 168, _) => "private",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved, 240.0.0.0/4",
        _ => return None,
    };
    Some(kind)
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback, private");
    }
    // IPv4-mapped (::ffff:a.b.c.d) and the deprecated IPv4-compatible (::a.b.c.d): the
    // connection goes to the IPv4 address, so the IPv4 rules decide.
    if let Some(v4) = ip.to_ipv4() {
        return v4_kind(v4).or(if s[5] == 0xffff { None } else { Some("IPv4-compatible") });
    }
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // NAT64 well-known prefix 64:ff9b::/96 reaches the embedded IPv4 address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_kind(embedded(s[6], s[7]));
    }
    // 6to4 2002:AABB:CCDD::/48 tunnels to the IPv4 address AA.BB.CC.DD.
    if s[0] == 0x2002 {
        return v4_kind(embedded(s[1], s[2]));
    }
    let kind = match s[0] {
        0x0064 if s[1] == 0xff9b && s[2] == 0x0001 => "local-use NAT64",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only",
        0x2001 if s[1] == 0 => "Teredo",
        0x2001 if s[1] == 0x0002 && s[2] == 0 => "benchmarking",
        0x2001 if (0x0010..=0x002f).contains(&s[1]) => "ORCHID",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x3fff if s[1] <= 0x0fff => "documentation",
        0xfc00..=0xfdff => "unique-local, private",
        0xfe80..=0xfebf => "link-local, private",
        0xfec0..=0xfeff => "site-local, private",
        0xff00..=0xffff => "multicast",
        0x2000..=0x3fff => return None,
        _ => "reserved, outside 2000::/3",
    };
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        match s.parse() {
            Ok(ip) => ip,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn public_ip_table() {
        let refused = [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "192.0.0.8",
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fc00::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
            "2001::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::10.0.0.1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "4000::1",
        ];
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "169.253.1.1",
            "2606:4700::1111",
            "2a00:1450:4001:80e::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ];
        for s in refused {
            assert!(!is_public_ip(ip(s)), "{s} must be refused");
        }
        for s in allowed {
            assert!(is_public_ip(ip(s)), "{s} must be allowed");
        }
    }

    #[tokio::test]
    async fn check_refuses_loopback_unless_private_is_allowed() {
        let strict = TargetGuard::default();
        match strict.check("http://127.0.0.1:9/").await {
            Err(DeliveryError::Refused(msg)) => assert!(msg.contains("private"), "{msg}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Other spellings of loopback are normalised by the URL parser and refused too.
        for url in ["http://[::1]:9/", "http://[::ffff:127.0.0.1]/", "http://0x7f.1/", "http://localhost:9/"] {
            assert!(matches!(strict.check(url).await, Err(DeliveryError::Refused(_))), "{url}");
        }

        let lenient = TargetGuard { allow_private: true };
        let target = match lenient.check("http://127.0.0.1:9/hook?a=1").await {
            Ok(target) => target,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(target.host, "127.0.0.1");
        assert_eq!(target.addrs, vec![SocketAddr::from(([127, 0, 0, 1], 9))]);
        assert_eq!(target.url.path(), "/hook");
    }

    #[tokio::test]
    async fn check_rejects_other_schemes_and_garbage() {
        let guard = TargetGuard { allow_private: true };
        for url in ["ftp://x", "file:///etc/passwd", "not a url", "http://", "gopher://127.0.0.1/"] {
            assert!(matches!(guard.check(url).await, Err(DeliveryError::InvalidUrl(_))), "{url}");
        }
    }

    #[tokio::test]
    async fn storing_refuses_what_delivery_would_but_not_unresolved_names() {
        let strict = TargetGuard::default();
        for url in ["http://127.0.0.1:9/", "http://localhost:9/", "http://[::1]/", "http://10.0.0.1/"] {
            assert!(matches!(strict.check_before_storing(url).await, Err(DeliveryError::Refused(_))), "{url}");
        }
        assert!(matches!(strict.check_before_storing("ftp://x/").await, Err(DeliveryError::InvalidUrl(_))));
        assert_eq!(strict.check_before_storing("https://leadscore-test.invalid/").await, Ok(()), "may resolve later");
        assert_eq!(strict.check_before_storing("https://8.8.8.8/hook").await, Ok(()));
        assert_eq!(TargetGuard { allow_private: true }.check_before_storing("http://127.0.0.1:9/").await, Ok(()));
    }

    #[tokio::test]
    async fn unresolvable_hosts_are_resolve_errors() {
        // `.invalid` is reserved (RFC 2606) and never resolves.
        let guard = TargetGuard::default();
        assert!(matches!(guard.check("https://leadscore-test.invalid/").await, Err(DeliveryError::Resolve(_))));
    }
}
