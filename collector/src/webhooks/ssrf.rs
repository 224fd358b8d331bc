//! The SSRF guard of webhook URLs: only `http` and `https`, and only hosts whose every address
//! is public. Every address class of `acp_netclass` (the filter's SSRF scanner classifies with
//! it too) is refused unless the operator allows its range (`--webhook-allow-cidrs`): loopback,
//! private (RFC 1918, unique and site local), shared (CGNAT), link-local and cloud metadata
//! (169.254.169.254, fd00:ec2::254, ...), unspecified, multicast, reserved and documentation
//! ranges, and IPv6 addresses that carry such an IPv4 address (mapped, NAT64, 6to4). The check runs at
//! creation and again on every connection ([`GuardedResolver`]), so a name that later resolves
//! to a private address (DNS rebinding) is still refused.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;

/// The ranges an operator allows besides public addresses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowList(Vec<IpNet>);

/// Parses `cidr,cidr` (an empty text allows nothing more).
pub fn parse_allow_list(text: &str) -> Result<AllowList, String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse()
                .map_err(|_| format!("{item:?} is not a CIDR range"))
        })
        .collect::<Result<_, _>>()
        .map(AllowList)
}

impl AllowList {
    pub fn permits(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        acp_netclass::classify_ip(ip).is_none() || self.0.iter().any(|net| net.contains(&canonical))
    }

    /// Checks the scheme, the host and, when the host is an address, the address.
    pub fn check_url(&self, text: &str) -> Result<Url, String> {
        let url = Url::parse(text).map_err(|err| format!("`url` is not a URL: {err}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`url` must be http or https, not {}", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("`url` must not carry credentials".into());
        }
        match url.host() {
            None => Err("`url` has no host".into()),
            Some(url::Host::Ipv4(ip)) => self.check_ip(ip.into()).map(|()| url.clone()),
            Some(url::Host::Ipv6(ip)) => self.check_ip(ip.into()).map(|()| url.clone()),
            Some(url::Host::Domain(_)) => Ok(url.clone()),
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(format!(
                "`url` resolves to {ip}, a loopback, private, link-local or metadata address; \
                 the operator can allow its range with --webhook-allow-cidrs"
            ))
        }
    }

    /// Resolves `host` (blocking) and returns its addresses if every one is allowed.
    pub fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, String> {
        let addrs: Vec<SocketAddr> = (host, 0)
            .to_socket_addrs()
            .map_err(|err| format!("cannot resolve {host}: {err}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{host} has no address"));
        }
        addrs.iter().try_for_each(|addr| self.check_ip(addr.ip()))?;
        Ok(addrs)
    }

    /// [`AllowList::check_url`] and, for a name, [`AllowList::resolve`] (blocking).
    pub fn check_url_resolved(&self, text: &str) -> Result<Url, String> {
        let url = self.check_url(text)?;
        if let Some(url::Host::Domain(host)) = url.host() {
            self.resolve(host)?;
        }
        Ok(url)
    }
}

/// The HTTP client's resolver: every connection's addresses pass [`AllowList::resolve`].
pub struct GuardedResolver(pub Arc<AllowList>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = tokio::task::spawn_blocking(move || allow.resolve(&host))
                .await
                .map_err(|err| err.to_string())??;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_refused_unless_allowed() {
        let strict = AllowList::default();
        for url in [
            "http://127.0.0.1:8080/x",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00:ec2::254]/",
            "http://100.100.100.200/",
            "http://0.0.0.0/",
            "http://[2002:a9fe:a9fe::1]/",
            "http://[fec0::1]/",
            "http://[64:ff9b::a00:1]/",
            "http://192.0.2.10/",
            "http://[2001:db8::1]/",
        ] {
            let err = strict.check_url(url).unwrap_err();
            assert!(err.contains("--webhook-allow-cidrs"), "{url}: {err}");
        }
        assert!(strict.check_url("https://93.184.215.14/hook").is_ok());
        // NAT64 of a public address is public.
        assert!(strict
            .check_url("https://[64:ff9b::5db8:d70e]/hook")
            .is_ok());
        assert!(strict.check_url_resolved("http://localhost:9/").is_err());
        for (url, reason) in [
            ("ftp://example.com/", "http or https"),
            ("file:///etc/passwd", "http or https"),
            ("https://user:pw@example.com/", "credentials"),
            ("not a url", "not a URL"),
        ] {
            let err = strict.check_url(url).unwrap_err();
            assert!(err.contains(reason), "{url}: {err}");
        }

        let loopback = parse_allow_list("127.0.0.0/8, ::1/128").unwrap();
        assert!(loopback.check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(loopback.check_url_resolved("http://127.0.0.1:9/").is_ok());
        assert!(loopback.check_url("http://10.1.2.3/").is_err());
        assert!(parse_allow_list("10.0.0.0/33").is_err());
        assert_eq!(parse_allow_list("").unwrap(), AllowList::default());
    }
}
