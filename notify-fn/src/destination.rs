//! Where a webhook may go (SSRF). A component cannot resolve names, so notify-fn refuses what
//! it can judge from the URL alone: host names that only mean something inside a network
//! (single labels, `localhost`, `.local`, `.internal`, `.svc`, ...) and addresses of the IANA
//! special-purpose registries (IPv4 and IPv6; the IPv4-mapped and NAT64 forms judged by the
//! IPv4 address they carry). What a public name resolves to is the egress NetworkPolicy's to
//! judge (k8s/spin/networkpolicies.yaml). The same rules hold when a subscription is created and
//! again before every attempt, so a subscription that a configuration change made disallowed
//! is not sent to. `allow_private_webhooks` (local runs, tests) lifts them.

use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Suffixes of names that resolve only inside a network: mDNS (`.local`, RFC 6762, which also
/// covers Kubernetes' `.cluster.local`), `.localhost` (RFC 6761), `.internal` (ICANN's private
/// use TLD, Spin's `.spin.internal` included), Kubernetes' `.svc`, `.home.arpa` (RFC 8375), and
/// the names RFC 6762 appendix G lists as used privately.
const INTERNAL_SUFFIXES: [&str; 10] = [
    ".local",
    ".localhost",
    ".internal",
    ".svc",
    ".home.arpa",
    ".home",
    ".lan",
    ".corp",
    ".intranet",
    ".private",
];

/// The IANA IPv4 Special-Purpose Address Registry (every block, reachable or not: none is a
/// webhook receiver's), plus multicast.
const SPECIAL_V4: [(Ipv4Addr, u8); 19] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),          // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8),         // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),      // shared address space (CGNAT)
    (Ipv4Addr::new(127, 0, 0, 0), 8),        // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),     // link-local (cloud metadata)
    (Ipv4Addr::new(172, 16, 0, 0), 12),      // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),       // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),       // documentation (TEST-NET-1)
    (Ipv4Addr::new(192, 31, 196, 0), 24),    // AS112-v4
    (Ipv4Addr::new(192, 52, 193, 0), 24),    // AMT
    (Ipv4Addr::new(192, 88, 99, 0), 24),     // deprecated 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16),     // private
    (Ipv4Addr::new(192, 175, 48, 0), 24),    // direct delegation AS112
    (Ipv4Addr::new(198, 18, 0, 0), 15),      // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24),    // documentation (TEST-NET-2)
    (Ipv4Addr::new(203, 0, 113, 0), 24),     // documentation (TEST-NET-3)
    (Ipv4Addr::new(224, 0, 0, 0), 4),        // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),        // reserved
    (Ipv4Addr::new(255, 255, 255, 255), 32), // limited broadcast
];

/// The IANA IPv6 Special-Purpose Address Registry, plus multicast, the deprecated site-local
/// and IPv4-compatible blocks. `::ffff:0:0/96` (IPv4-mapped) and `64:ff9b::/96` (NAT64) are not
/// here: an address in them is judged by the IPv4 address it carries.
const SPECIAL_V6: [(Ipv6Addr, u8); 14] = [
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96), // unspecified, loopback, IPv4-compatible
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use NAT64
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64), // discard-only
    (Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0), 64), // dummy prefix
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF protocol assignments (Teredo, ...)
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16), // 6to4 (deprecated)
    (Ipv6Addr::new(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0), 48), // direct delegation AS112
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16), // segment routing SIDs
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // site-local (deprecated)
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
];

/// Why a webhook must not be sent to `url`, if it must not.
pub fn refusal(url: &Url, allow_private: bool) -> Option<&'static str> {
    if allow_private {
        return None;
    }
    match url.host()? {
        Host::Domain(name) => is_internal_name(name)
            .then_some("must not name a host that only resolves inside a network (localhost, a single label, .local, .internal, .svc, ...)"),
        Host::Ipv4(ip) => is_special_v4(ip)
            .then_some("must not point at a loopback, private, link-local or other special-purpose address"),
        Host::Ipv6(ip) => is_special_v6(ip)
            .then_some("must not point at a loopback, private, link-local or other special-purpose address"),
    }
}

fn is_internal_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    !name.contains('.') || INTERNAL_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
}

fn is_special_v4(ip: Ipv4Addr) -> bool {
    SPECIAL_V4.iter().any(|(network, length)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(*length)).unwrap_or(0);
        u32::from(ip) & mask == u32::from(*network) & mask
    })
}

fn is_special_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let [a, b, c, d, e, f, ..] = ip.segments();
    // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) reach the IPv4 address.
    let carries_v4 =
        (a, b, c, d, e, f) == (0, 0, 0, 0, 0, 0xffff) || (a, b, c, d, e, f) == (0x64, 0xff9b, 0, 0, 0, 0);
    if carries_v4 {
        return is_special_v4(Ipv4Addr::from(bits as u32));
    }
    SPECIAL_V6.iter().any(|(network, length)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(*length)).unwrap_or(0);
        bits & mask == u128::from(*network) & mask
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        refusal(&Url::parse(url).unwrap(), false).is_some()
    }

    #[test]
    fn internal_names() {
        for url in [
            "http://localhost/",
            "http://LOCALHOST./",
            "http://intranet/",
            "http://printer.local/",
            "http://api.localhost/",
            "http://notify-fn.spin.internal/",
            "http://metadata.google.internal/",
            "http://db.default.svc/",
            "http://db.default.svc.cluster.local/",
            "http://nas.home.arpa/",
            "http://router.lan/",
        ] {
            assert!(refused(url), "{url}");
            assert!(refusal(&Url::parse(url).unwrap(), true).is_none(), "{url}");
        }
        for url in [
            "https://hooks.example.com/",
            "https://example.localhost.com/",
            "https://svc.example.org/",
            "https://local.example/",
        ] {
            assert!(!refused(url), "{url}");
        }
    }

    #[test]
    fn special_ipv4() {
        for url in [
            "http://0.1.2.3/",
            "http://10.0.0.1/",
            "http://100.64.0.1/",
            "http://100.127.255.255/",
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://169.254.169.254/latest",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.0.0.8/",
            "http://192.0.2.1/",
            "http://192.31.196.1/",
            "http://192.52.193.1/",
            "http://192.88.99.1/",
            "http://192.168.1.1/",
            "http://192.175.48.1/",
            "http://198.18.0.1/",
            "http://198.19.255.255/",
            "http://198.51.100.1/",
            "http://203.0.113.1/",
            "http://224.0.0.1/",
            "http://240.0.0.1/",
            "http://255.255.255.255/",
        ] {
            assert!(refused(url), "{url}");
        }
        for url in [
            "http://8.8.8.8/",
            "http://100.128.0.1/",
            "http://172.32.0.1/",
            "http://198.20.0.1/",
            "http://11.0.0.1/",
            "http://223.255.255.255/",
        ] {
            assert!(!refused(url), "{url}");
        }
    }

    #[test]
    fn special_ipv6() {
        for url in [
            "http://[::]/",
            "http://[::1]/",
            "http://[::127.0.0.1]/",
            "http://[::8.8.8.8]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[::ffff:0:0]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b::]/",
            "http://[64:ff9b:1::1]/",
            "http://[100::1]/",
            "http://[2001::1]/",
            "http://[2001:1::1]/",
            "http://[2001:db8::1]/",
            "http://[2002:7f00:1::1]/",
            "http://[2620:4f:8000::1]/",
            "http://[3fff::1]/",
            "http://[5f00::1]/",
            "http://[fd00::1]/",
            "http://[fc00::1]/",
            "http://[fe80::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
        ] {
            assert!(refused(url), "{url}");
        }
        for url in [
            "http://[2606:4700::1111]/",
            "http://[::ffff:8.8.8.8]/",
            "http://[64:ff9b::808:808]/",
            "http://[2001:4860:4860::8888]/",
        ] {
            assert!(!refused(url), "{url}");
        }
    }
}
