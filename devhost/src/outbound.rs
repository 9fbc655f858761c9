//! `allowed_outbound_hosts` as Spin reads it: `scheme://host[:port]` entries where scheme, host
//! and port may be `*`, a host may be `*.suffix` and a port a range `a..b`; a missing port means
//! the scheme's default. Entries are expanded from templates once, at start-up.

use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    entries: Vec<AllowedHost>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    scheme: Pattern,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Any,
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Suffix(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    Range(u16, u16),
}

impl AllowedHosts {
    /// Parses already-expanded entries.
    pub fn parse(entries: &[String]) -> Result<Self> {
        let entries = entries
            .iter()
            .map(|entry| AllowedHost::parse(entry))
            .collect::<Result<_>>()?;
        Ok(Self { entries })
    }

    /// Whether a connection to `scheme://host:port` is allowed (`port` None means the default).
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = port.or_else(|| default_port(scheme));
        self.entries
            .iter()
            .any(|entry| entry.matches(scheme, &host, port))
    }
}

impl AllowedHost {
    fn parse(entry: &str) -> Result<Self> {
        let Some((scheme, rest)) = entry.split_once("://") else {
            bail!("allowed_outbound_hosts entry {entry:?} has no scheme: write it as scheme://host[:port]");
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            bail!("allowed_outbound_hosts entry {entry:?} has a path; only scheme://host[:port] is allowed");
        }
        let scheme_pattern = match scheme {
            "*" => Pattern::Any,
            s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) => {
                Pattern::Exact(s.to_ascii_lowercase())
            }
            _ => bail!("allowed_outbound_hosts entry {entry:?} has an invalid scheme"),
        };
        let (host, port) = split_host_port(rest)
            .ok_or_else(|| anyhow::anyhow!("allowed_outbound_hosts entry {entry:?} has an invalid port"))?;
        let host = match host {
            "" => bail!("allowed_outbound_hosts entry {entry:?} has no host"),
            "*" => HostPattern::Any,
            h if h.starts_with("*.") => HostPattern::Suffix(h[1..].to_ascii_lowercase()),
            h if h.contains('*') => bail!(
                "allowed_outbound_hosts entry {entry:?}: '*' may only stand for the whole host or a leading label"
            ),
            h => HostPattern::Exact(
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase(),
            ),
        };
        let port = match port {
            None => match &scheme_pattern {
                Pattern::Exact(s) => match default_port(s) {
                    Some(p) => PortPattern::Range(p, p + 1),
                    None => bail!(
                        "allowed_outbound_hosts entry {entry:?}: scheme {s} has no default port, so give one"
                    ),
                },
                Pattern::Any => bail!(
                    "allowed_outbound_hosts entry {entry:?}: a wildcard scheme needs a port (use :* for any)"
                ),
            },
            Some("*") => PortPattern::Any,
            Some(p) => parse_port_range(p).ok_or_else(|| {
                anyhow::anyhow!("allowed_outbound_hosts entry {entry:?} has an invalid port {p:?}")
            })?,
        };
        Ok(Self {
            scheme: scheme_pattern,
            host,
            port,
        })
    }

    fn matches(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme_ok = match &self.scheme {
            Pattern::Any => true,
            Pattern::Exact(s) => s.eq_ignore_ascii_case(scheme),
        };
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()) && host.len() > suffix.len(),
            HostPattern::Exact(h) => h == host,
        };
        let port_ok = match (&self.port, port) {
            (PortPattern::Any, _) => true,
            (PortPattern::Range(lo, hi), Some(p)) => (*lo..*hi).contains(&p),
            (PortPattern::Range(..), None) => false,
        };
        scheme_ok && host_ok && port_ok
    }
}

/// Splits `host[:port]`, keeping IPv6 literals in brackets whole.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            _ => rest.strip_prefix(':').map(|port| (host, Some(port))),
        };
    }
    Some(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn parse_port_range(text: &str) -> Option<PortPattern> {
    match text.split_once("..") {
        Some((lo, hi)) => {
            let (lo, hi) = (lo.parse().ok()?, hi.parse().ok()?);
            (lo < hi).then_some(PortPattern::Range(lo, hi))
        }
        None => text
            .parse::<u16>()
            .ok()
            .map(|p| PortPattern::Range(p, p.saturating_add(1))),
    }
}

/// The warning Spin prints when a component reaches for a destination its list does not allow.
pub fn warn_denied(url: &str) {
    eprintln!(
        "Warning: A component tried to make an outbound network connection to disallowed destination '{url}'.\nTo allow this request, add 'allowed_outbound_hosts = [\"{url}\"]' to the manifest component section."
    );
}

pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" | "postgresql" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exact_entries_use_default_ports() {
        let allowed = hosts(&["postgres://db.local", "https://api.example.com"]);
        assert!(allowed.allows("postgres", "db.local", None));
        assert!(allowed.allows("postgres", "db.local", Some(5432)));
        assert!(!allowed.allows("postgres", "db.local", Some(5433)));
        assert!(allowed.allows("https", "API.example.com", None));
        assert!(!allowed.allows("http", "api.example.com", None));
    }

    #[test]
    fn wildcards_and_ranges() {
        let allowed = hosts(&[
            "*://*.spin.internal:*",
            "http://127.0.0.1:8000..8010",
            "https://*:443",
        ]);
        assert!(allowed.allows("http", "notify-fn.spin.internal", None));
        assert!(!allowed.allows("http", "spin.internal", None));
        assert!(allowed.allows("http", "127.0.0.1", Some(8005)));
        // Spin's ranges exclude their end.
        assert!(!allowed.allows("http", "127.0.0.1", Some(8010)));
        assert!(allowed.allows("https", "anything.example", None));
    }

    #[test]
    fn empty_list_denies_everything() {
        let allowed = hosts(&[]);
        assert!(!allowed.allows("http", "localhost", None));
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "db.local",
            "http://host/path",
            "http://host:abc",
            "*://host",
            "http://",
            "http://a*b.com",
        ] {
            assert!(AllowedHosts::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(AllowedHosts::parse(&["http://host/".to_string()]).is_ok());
    }

    #[test]
    fn ipv6_literals() {
        let allowed = hosts(&["http://[::1]:8080"]);
        assert!(allowed.allows("http", "[::1]", Some(8080)));
        assert!(allowed.allows("http", "::1", Some(8080)));
    }
}
