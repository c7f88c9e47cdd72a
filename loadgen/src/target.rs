//! Targets: base URLs, their expansion into one endpoint per resolved address, and the
//! `/healthz` probe that names each endpoint before the run.
//!
//! A compose service with replicas is one DNS name with several A records. Connecting by name
//! would let the resolver pick, so some replicas would get no load and none would get its own
//! row; instead every address becomes an endpoint of its own, with the `Host` header keeping
//! the name. `--resolve NAME=ADDR,…` overrides DNS (like curl's `--resolve`), which also makes
//! the expansion testable without touching `/etc/hosts`.
//!
//! Each endpoint is labelled by the `instance` its `/healthz` reports (in the lab: the
//! container's host name, which is also the Loki `instance` label) and its `flavor`; a target
//! that answers something else is labelled by its address.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    str::FromStr,
    time::Duration,
};

use hyper::header::HeaderValue;
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use crate::{
    error::Error,
    send::{Client, Destination},
};

/// One `--target` base URL, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, for messages and reports.
    pub url: String,
    /// Host name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
    /// `Host` header value: `host[:port]` as written in the URL.
    pub authority: String,
    /// Path prefix without a trailing slash.
    pub base_path: String,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let url = Url::parse(input).map_err(|e| format!("invalid target URL '{input}': {e}"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "invalid target URL '{input}': only http:// is supported"
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(format!("invalid target URL '{input}': no host")),
        };
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "invalid target URL '{input}': a base URL takes no query or fragment"
            ));
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        Ok(Self {
            url: input.to_owned(),
            host,
            port,
            authority,
            base_path: url.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// `--resolve NAME=ADDR[,ADDR…]`: the addresses to use for NAME instead of DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOverride {
    pub host: String,
    pub addrs: Vec<IpAddr>,
}

impl FromStr for ResolveOverride {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, addrs) = s
            .split_once('=')
            .ok_or_else(|| format!("--resolve '{s}' is not NAME=ADDR[,ADDR...]"))?;
        let addrs = addrs
            .split(',')
            .map(|a| {
                a.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| format!("--resolve '{s}': '{a}' is not an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if host.is_empty() || addrs.is_empty() {
            return Err(format!("--resolve '{s}' is not NAME=ADDR[,ADDR...]"));
        }
        Ok(Self {
            host: host.to_owned(),
            addrs,
        })
    }
}

/// One address of one target: what a lane sends to and how the report names it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub target: String,
    pub addr: SocketAddr,
    pub destination: Destination,
    /// The `instance` from `/healthz`, or the address.
    pub instance: String,
    /// `release` / `canary` from `/healthz`, when the target says.
    pub flavor: Option<String>,
}

/// Resolves every target to its addresses (deduplicated, in resolver order).
pub async fn expand(
    targets: &[Target],
    overrides: &[ResolveOverride],
) -> Result<Vec<(Target, SocketAddr)>, Error> {
    let overrides: HashMap<&str, &[IpAddr]> = overrides
        .iter()
        .map(|o| (o.host.as_str(), o.addrs.as_slice()))
        .collect();
    let mut out: Vec<(Target, SocketAddr)> = Vec::new();
    for target in targets {
        let addrs: Vec<SocketAddr> = if let Some(ips) = overrides.get(target.host.as_str()) {
            ips.iter()
                .map(|ip| SocketAddr::new(*ip, target.port))
                .collect()
        } else if let Ok(ip) = target.host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, target.port)]
        } else {
            tokio::net::lookup_host((target.host.as_str(), target.port))
                .await
                .map_err(|e| Error::Lookup {
                    host: target.host.clone(),
                    reason: e.to_string(),
                })?
                .collect()
        };
        for addr in addrs {
            if !out
                .iter()
                .any(|(t, a)| *a == addr && t.authority == target.authority)
            {
                out.push((target.clone(), addr));
            }
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Health {
    instance: Option<String>,
    flavor: Option<String>,
}

/// Checks that the address answers HTTP and learns its name from `/healthz`.
pub async fn probe(
    target: &Target,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Endpoint, String> {
    let destination = Destination {
        addr,
        host: HeaderValue::from_str(&target.authority).map_err(|e| e.to_string())?,
        base_path: target.base_path.clone(),
    };
    let mut client = Client::new(destination.clone(), timeout);
    let (status, body) = client.fetch("/healthz").await?;
    let health = (status == 200)
        .then(|| serde_json::from_slice::<Health>(&body).ok())
        .flatten();
    let (instance, flavor) = match health {
        Some(h) => (h.instance.unwrap_or_else(|| addr.to_string()), h.flavor),
        None => (addr.to_string(), None),
    };
    Ok(Endpoint {
        target: target.url.clone(),
        addr,
        destination,
        instance,
        flavor,
    })
}

/// Expands and probes every target, retrying unreachable addresses until `wait` has passed.
///
/// An address that stays unreachable is dropped with a warning when its name has other,
/// reachable addresses (`localhost` → `::1` beside `127.0.0.1`); a target none of whose
/// addresses answers is an error, reported before any load is sent.
pub async fn discover(
    targets: &[Target],
    overrides: &[ResolveOverride],
    timeout: Duration,
    wait: Duration,
) -> Result<Vec<Endpoint>, Error> {
    let deadline = Instant::now() + wait;
    loop {
        match discover_once(targets, overrides, timeout).await {
            Ok(endpoints) => return Ok(dedupe_names(endpoints)),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

async fn discover_once(
    targets: &[Target],
    overrides: &[ResolveOverride],
    timeout: Duration,
) -> Result<Vec<Endpoint>, Error> {
    let expanded = expand(targets, overrides).await?;
    let probe_timeout = timeout.min(Duration::from_secs(5));
    let mut endpoints = Vec::new();
    for target in targets {
        let mut reached = 0;
        let mut last_error = String::from("no address");
        let mut skipped = Vec::new();
        for (t, addr) in expanded.iter().filter(|(t, _)| t == target) {
            match probe(t, *addr, probe_timeout).await {
                Ok(ep) => {
                    reached += 1;
                    endpoints.push(ep);
                }
                Err(e) => {
                    skipped.push(format!("{addr} ({e})"));
                    last_error = format!("{addr}: {e}");
                }
            }
        }
        if reached == 0 {
            return Err(Error::Unreachable {
                target: target.url.clone(),
                reason: last_error,
            });
        }
        for s in skipped {
            eprintln!("warning: {}: skipping unreachable address {s}", target.url);
        }
    }
    Ok(endpoints)
}

/// Two endpoints that report the same instance keep apart in the report by their address.
fn dedupe_names(mut endpoints: Vec<Endpoint>) -> Vec<Endpoint> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for ep in &endpoints {
        *counts.entry(ep.instance.clone()).or_default() += 1;
    }
    for ep in &mut endpoints {
        if counts[&ep.instance] > 1 {
            ep.instance = format!("{}@{}", ep.instance, ep.addr);
        }
    }
    endpoints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_the_name_for_the_host_header() {
        let t: Target = "http://api:8080/".parse().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("api", 8080));
        assert_eq!(t.authority, "api:8080");
        assert_eq!(t.base_path, "");
        let t: Target = "http://[::1]:9/x/".parse().unwrap();
        assert_eq!((t.host.as_str(), t.authority.as_str()), ("::1", "[::1]:9"));
        assert_eq!(t.base_path, "/x");
        assert!("https://api".parse::<Target>().is_err());
        assert!("not a url".parse::<Target>().is_err());
        assert!("http://a:1/?q".parse::<Target>().is_err());
    }

    #[tokio::test]
    async fn overrides_expand_a_name_to_every_address() {
        let t: Target = "http://lab.test:81".parse().unwrap();
        let o: ResolveOverride = "lab.test=127.0.0.1,127.0.0.2".parse().unwrap();
        let got = expand(&[t], &[o]).await.unwrap();
        let addrs: Vec<String> = got.iter().map(|(_, a)| a.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.1:81", "127.0.0.2:81"]);
        assert!("x=".parse::<ResolveOverride>().is_err());
        assert!("x=1.2.3".parse::<ResolveOverride>().is_err());
    }
}
