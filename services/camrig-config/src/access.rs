//! The `[access]` section's validated form: the operator's credentials, the host names the
//! controller answers for, and the opt-in trusted subnets. The controller's `access` module
//! enforces it.

use std::net::IpAddr;

/// The `[access]` section of controller.toml, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct AccessConfig {
    /// The API token clients send as `Authorization: Bearer <token>`.
    pub api_token: String,
    /// The operator password's Argon2 hash as provisioned; `None`: log in with the token.
    pub password_hash: Option<String>,
    /// Host names and addresses (the `Host` header, without port) this controller answers for,
    /// besides its listen address and localhost.
    pub hosts: Vec<String>,
    /// Clients from these subnets need no login (empty by default).
    pub trusted_subnets: Vec<Subnet>,
}

/// An IPv4 or IPv6 network in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Subnet {
    /// Parses `192.168.1.0/24`, `fd00::/8` or a single address (a /32 or /128).
    pub fn parse(text: &str) -> Result<Subnet, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address or subnet such as 192.168.1.0/24"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0-{max}"))?,
        };
        Ok(Subnet { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let s = Subnet::parse("192.168.1.0/24").unwrap();
        assert!(s.contains("192.168.1.77".parse().unwrap()));
        assert!(s.contains("::ffff:192.168.1.77".parse().unwrap()));
        assert!(!s.contains("192.168.2.1".parse().unwrap()));
        assert!(!s.contains("fd00::1".parse().unwrap()));
        assert!(Subnet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        let one = Subnet::parse("10.0.0.5").unwrap();
        assert_eq!(one.prefix, 32);
        assert!(!one.contains("10.0.0.6".parse().unwrap()));
        assert!(Subnet::parse("fd00::/8")
            .unwrap()
            .contains("fd12::1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "fd00::/129", "host/24", "10.0.0.0/x"] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
    }
}
