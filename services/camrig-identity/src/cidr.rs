//! IPv4 addresses with a prefix length: an interface address (`192.168.1.101/24`) and a
//! network (`192.168.1.0/24`), parsed from strings with messages that say what to write.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// Splits `a.b.c.d/p` into its address and prefix length.
fn split(s: &str, example: &str) -> Result<(Ipv4Addr, u8), String> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("'{s}' has no prefix length; write it like \"{example}\""))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("'{addr}' is not an IPv4 address; write it like \"{example}\""))?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(|| {
        format!("'/{prefix}' is not a prefix length 0-32; write it like \"{example}\"")
    })?;
    Ok((addr, prefix))
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// An IPv4 network: address with all host bits zero, and its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }

    /// The all-ones host address of the network.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = split(s, "192.168.1.0/24")?;
        let network = Ipv4Addr::from(u32::from(addr) & mask(prefix));
        if network != addr {
            return Err(format!(
                "'{s}' has host bits set; the network is \"{network}/{prefix}\""
            ));
        }
        Ok(Ipv4Cidr { network, prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An interface address: a host address and the prefix length of its LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Interface {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Interface {
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The network this address is on.
    pub fn network(&self) -> Ipv4Cidr {
        Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(self.addr) & mask(self.prefix)),
            prefix: self.prefix,
        }
    }
}

impl FromStr for Ipv4Interface {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = split(s, "192.168.1.101/24")?;
        let iface = Ipv4Interface { addr, prefix };
        let net = iface.network();
        // /31 and /32 have no network or broadcast address to collide with.
        if prefix <= 30 && (addr == net.network() || addr == net.broadcast()) {
            return Err(format!(
                "'{s}' is the network's own {} address, not a host's; pick one between them",
                if addr == net.network() {
                    "network"
                } else {
                    "broadcast"
                }
            ));
        }
        Ok(iface)
    }
}

impl fmt::Display for Ipv4Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Ipv4Interface {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_parses_and_contains() {
        let net: Ipv4Cidr = "192.168.1.0/24".parse().unwrap();
        assert!(net.contains("192.168.1.101".parse().unwrap()));
        assert!(!net.contains("192.168.2.1".parse().unwrap()));
        assert_eq!(net.broadcast(), Ipv4Addr::new(192, 168, 1, 255));
        assert_eq!(net.to_string(), "192.168.1.0/24");
    }

    #[test]
    fn network_with_host_bits_names_the_network() {
        let err = "192.168.1.10/24".parse::<Ipv4Cidr>().unwrap_err();
        assert!(err.contains("\"192.168.1.0/24\""), "{err}");
    }

    #[test]
    fn missing_or_bad_prefix_is_refused_with_an_example() {
        assert!("192.168.1.0"
            .parse::<Ipv4Cidr>()
            .unwrap_err()
            .contains("no prefix length"));
        assert!("192.168.1.0/33"
            .parse::<Ipv4Cidr>()
            .unwrap_err()
            .contains("prefix length 0-32"));
        assert!("192.168.1/24"
            .parse::<Ipv4Interface>()
            .unwrap_err()
            .contains("not an IPv4 address"));
    }

    #[test]
    fn interface_address_knows_its_network() {
        let i: Ipv4Interface = "10.0.2.15/24".parse().unwrap();
        assert_eq!(i.addr(), Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(i.network().to_string(), "10.0.2.0/24");
    }

    #[test]
    fn interface_address_cannot_be_network_or_broadcast() {
        assert!("10.0.2.0/24"
            .parse::<Ipv4Interface>()
            .unwrap_err()
            .contains("network"));
        assert!("10.0.2.255/24"
            .parse::<Ipv4Interface>()
            .unwrap_err()
            .contains("broadcast"));
        assert!("10.0.2.1/31".parse::<Ipv4Interface>().is_ok());
    }
}
