//! IP prefixes (`10.0.0.0/8`, `fd00::/64`) as NetworkPolicy `ipBlock`s use them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address prefix; host bits are ignored, as the API server's CIDR parsing does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: u128,
    len: u8,
    v6: bool,
}

fn bits(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(a) => (u32::from(a) as u128, false),
        IpAddr::V6(a) => (u128::from(a), true),
    }
}

impl Cidr {
    fn width(&self) -> u8 {
        if self.v6 {
            128
        } else {
            32
        }
    }

    fn mask(&self) -> u128 {
        let host = self.width() - self.len;
        if self.len == 0 {
            0
        } else {
            (u128::MAX >> (128 - self.width() as u32)) & !((1u128 << host) - 1)
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (addr, v6) = bits(ip);
        v6 == self.v6 && addr & self.mask() == self.network
    }

    /// True when every address of `other` is in `self` and `other` is smaller (the API server
    /// wants `except` entries strictly inside `cidr`).
    pub fn strictly_contains(&self, other: &Cidr) -> bool {
        other.v6 == self.v6 && other.len > self.len && other.network & self.mask() == self.network
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (want address/prefix-length)"))?;
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let (raw, v6) = bits(ip);
        let width = if v6 { 128 } else { 32 };
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= width)
            .ok_or_else(|| format!("prefix length {len:?} is not in 0..={width}"))?;
        let mut c = Cidr {
            network: 0,
            len,
            v6,
        };
        c.network = raw & c.mask();
        Ok(c)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip: IpAddr = if self.v6 {
            IpAddr::V6(self.network.into())
        } else {
            IpAddr::V4((self.network as u32).into())
        };
        write!(f, "{ip}/{}", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn contains_by_prefix_and_family() {
        assert!(c("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(c("0.0.0.0/0").contains(ip("192.0.2.1")));
        assert!(!c("0.0.0.0/0").contains(ip("::1")));
        assert!(c("::/0").contains(ip("fd00::1")));
        assert!(c("fd00::/64").contains(ip("fd00::ffff")));
        assert!(!c("fd00::/64").contains(ip("fd00:0:0:1::1")));
        assert!(c("10.1.2.3/32").contains(ip("10.1.2.3")));
        assert!(!c("10.1.2.3/32").contains(ip("10.1.2.4")));
    }

    #[test]
    fn host_bits_are_masked_and_displayed_canonically() {
        assert_eq!(c("10.1.2.3/16").to_string(), "10.1.0.0/16");
        assert_eq!(c("fd00::1/64").to_string(), "fd00::/64");
    }

    #[test]
    fn strict_subsets() {
        assert!(c("10.0.0.0/8").strictly_contains(&c("10.1.0.0/16")));
        assert!(!c("10.0.0.0/8").strictly_contains(&c("10.0.0.0/8")));
        assert!(!c("10.0.0.0/8").strictly_contains(&c("11.0.0.0/16")));
        assert!(!c("0.0.0.0/0").strictly_contains(&c("::/64")));
    }

    #[test]
    fn malformed_prefixes_say_why() {
        assert!("10.0.0.0"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("not a CIDR"));
        assert!("10.0.0/8"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("not an IP"));
        assert!("10.0.0.0/33"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("0..=32"));
        assert!("::/129".parse::<Cidr>().unwrap_err().contains("0..=128"));
    }
}
