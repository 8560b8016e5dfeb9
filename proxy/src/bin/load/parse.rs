//! Checked input: command-line values and the files the load generator reads, plus the open-loop
//! pacing schedule. Pure functions, unit-tested; every refusal says what was wrong.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// `http://IP:PORT` (an optional trailing `/`): the address to load. Only loopback addresses
/// are accepted: this tool is for tests on one machine, never for loading someone else's host.
pub fn url_base(s: &str) -> Result<SocketAddr, String> {
    let rest = s
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url-base {s:?}: must start with http://"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let addr = loopback_addr(rest).map_err(|e| format!("--url-base {s:?}: {e}"))?;
    Ok(addr)
}

/// `IP:PORT` on loopback (127.0.0.0/8 or ::1).
pub fn loopback_addr(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s
        .parse()
        .map_err(|_| format!("{s:?} is not IP:PORT (names are not resolved)"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{} is not a loopback address", addr.ip()));
    }
    if addr.port() == 0 {
        return Err("port 0 cannot be connected to".into());
    }
    Ok(addr)
}

/// Tokens, one a line; blank lines are skipped. A token goes into a URL path, so only the
/// URL-safe alphabet is accepted.
pub fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if t.len() > 256
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "line {}: {t:?} is not a token (A-Z a-z 0-9 - _, at most 256)",
                i + 1
            ));
        }
        out.push(t.to_string());
    }
    if out.is_empty() {
        return Err("no tokens in the file".into());
    }
    Ok(out)
}

/// The tag prefix: it ends up in a URL, so a short run of URL-safe characters.
pub fn tag_prefix(s: &str) -> Result<String, String> {
    if s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "--tag-prefix {s:?}: at most 64 of A-Z a-z 0-9 - _ ."
        ));
    }
    Ok(s.to_string())
}

/// A named window of the run, `NAME=FROM_MS:TO_MS` (milliseconds from the start, by due time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub name: String,
    pub from_ms: u64,
    pub to_ms: u64,
}

pub fn window(s: &str) -> Result<Window, String> {
    let bad = || format!("--window {s:?}: expected NAME=FROM_MS:TO_MS with FROM_MS < TO_MS");
    let (name, range) = s.split_once('=').ok_or_else(bad)?;
    let (from, to) = range.split_once(':').ok_or_else(bad)?;
    let from_ms: u64 = from.trim().parse().map_err(|_| bad())?;
    let to_ms: u64 = to.trim().parse().map_err(|_| bad())?;
    if name.is_empty() || from_ms >= to_ms {
        return Err(bad());
    }
    Ok(Window {
        name: name.to_string(),
        from_ms,
        to_ms,
    })
}

/// `count` consecutive IPv4 loopback source addresses from `first`.
pub fn bind_addresses(first: IpAddr, count: u32) -> Result<Vec<IpAddr>, String> {
    let IpAddr::V4(v4) = first else {
        return Err(format!("--bind-from {first}: an IPv4 loopback address"));
    };
    if count == 0 {
        return Err("--bind-count must be at least 1".into());
    }
    let start = u32::from(v4);
    let mut out = Vec::new();
    for i in 0..count {
        let a = start
            .checked_add(i)
            .map(Ipv4Addr::from)
            .filter(|a| a.is_loopback())
            .ok_or_else(|| {
                format!("--bind-from {first} --bind-count {count} leaves 127.0.0.0/8")
            })?;
        out.push(IpAddr::V4(a));
    }
    Ok(out)
}

/// Open-loop pacing: request `n` (from 0) is due `n / rate` seconds after the start, whatever
/// happened to the earlier ones. Measuring latency from this due time, not from the moment a
/// connection was free to send, keeps a stalled server from hiding its stall (coordinated
/// omission).
pub fn due(n: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(n as f64 / rate)
}

/// How many requests an open-loop run sends: those due before `duration`, at most `max`.
pub fn planned(rate: f64, duration: Duration, max: u64) -> u64 {
    let by_time = (duration.as_secs_f64() * rate).ceil();
    if by_time >= max as f64 {
        max
    } else {
        by_time as u64
    }
}

/// One request of a replayed stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    pub method: String,
    pub path: String,
    pub host: String,
    pub user_agent: Option<String>,
    pub forwarded_for: Option<String>,
    pub referer: Option<String>,
    pub extra: Option<(String, String)>,
}

/// A stream file: one request a line, seven tab-separated fields
/// `METHOD PATH HOST USER_AGENT X_FORWARDED_FOR REFERER EXTRA_HEADER`; an empty field means the
/// header is not sent; EXTRA_HEADER is `Name: value`.
pub fn stream(text: &str) -> Result<Vec<StreamRequest>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let at = |what: &str| format!("line {}: {what}", i + 1);
        let [method, path, host, ua, xff, referer, extra] = f[..] else {
            return Err(at(&format!("{} fields, expected 7", f.len())));
        };
        if !matches!(method, "GET" | "HEAD") {
            return Err(at(&format!("method {method:?}: GET or HEAD")));
        }
        if !path.starts_with('/') || host.is_empty() {
            return Err(at("the path must start with / and the host must be set"));
        }
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let extra = match opt(extra) {
            None => None,
            Some(h) => {
                let (n, v) = h
                    .split_once(':')
                    .ok_or_else(|| at("EXTRA_HEADER is not Name: value"))?;
                Some((n.trim().to_string(), v.trim().to_string()))
            }
        };
        out.push(StreamRequest {
            method: method.to_string(),
            path: path.to_string(),
            host: host.to_string(),
            user_agent: opt(ua),
            forwarded_for: opt(xff),
            referer: opt(referer),
            extra,
        });
    }
    if out.is_empty() {
        return Err("the stream is empty".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_base_is_loopback_only() {
        assert_eq!(
            url_base("http://127.0.0.1:8080/"),
            Ok("127.0.0.1:8080".parse().expect("addr"))
        );
        assert_eq!(
            url_base("http://[::1]:9"),
            Ok("[::1]:9".parse().expect("addr"))
        );
        assert!(url_base("https://127.0.0.1:8080").is_err());
        assert!(url_base("http://10.0.0.1:8080").is_err());
        assert!(url_base("http://localhost:8080").is_err());
        assert!(url_base("http://127.0.0.1:8080/c").is_err());
        assert!(url_base("http://127.0.0.1:0").is_err());
    }

    #[test]
    fn tokens_are_checked() {
        assert_eq!(
            tokens("abc\n\n  d-e_f \n"),
            Ok(vec!["abc".to_string(), "d-e_f".to_string()])
        );
        assert!(tokens("ok\nnot ok\n").unwrap_err().starts_with("line 2"));
        assert!(tokens("a/b").is_err());
        assert!(tokens("\n \n").is_err());
    }

    #[test]
    fn tag_prefixes_and_windows() {
        assert_eq!(tag_prefix("k1-"), Ok("k1-".to_string()));
        assert!(tag_prefix("a b").is_err());
        assert!(tag_prefix("a/b").is_err());
        assert_eq!(
            window("freeze=2000:7000"),
            Ok(Window {
                name: "freeze".into(),
                from_ms: 2000,
                to_ms: 7000
            })
        );
        assert!(window("x=5:5").is_err());
        assert!(window("=1:2").is_err());
        assert!(window("x=1-2").is_err());
    }

    #[test]
    fn bind_addresses_stay_in_loopback() {
        let first: IpAddr = "127.0.0.2".parse().expect("ip");
        let v = bind_addresses(first, 3).expect("three");
        assert_eq!(
            v.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        );
        assert!(bind_addresses("127.255.255.254".parse().expect("ip"), 3).is_err());
        assert!(bind_addresses("::1".parse().expect("ip"), 1).is_err());
        assert!(bind_addresses(first, 0).is_err());
    }

    #[test]
    fn open_loop_schedule() {
        assert_eq!(due(0, 100.0), Duration::ZERO);
        assert_eq!(due(150, 100.0), Duration::from_millis(1500));
        assert_eq!(due(1, 3.0), Duration::from_secs_f64(1.0 / 3.0));
        // 8 s at 500/s is 4,000 requests, unless the count bound is lower.
        assert_eq!(planned(500.0, Duration::from_secs(8), 1_000_000), 4000);
        assert_eq!(planned(500.0, Duration::from_secs(8), 100), 100);
        assert_eq!(planned(0.5, Duration::from_secs(3), 100), 2);
    }

    #[test]
    fn stream_lines() {
        let s = stream(
            "GET\t/c/abc\tgo.example\tMozilla/5.0\t198.51.100.1\thttps://r.test/1\t\n\
             HEAD\t/c/abc\tgo.example\t\t\t\tSec-Purpose: prefetch\n",
        )
        .expect("stream");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].user_agent.as_deref(), Some("Mozilla/5.0"));
        assert_eq!(s[0].extra, None);
        assert_eq!(s[1].method, "HEAD");
        assert_eq!(s[1].user_agent, None);
        assert_eq!(
            s[1].extra,
            Some(("Sec-Purpose".to_string(), "prefetch".to_string()))
        );
        assert!(stream("GET\t/c/a\th\n").is_err());
        assert!(stream("POST\t/c/a\th\t\t\t\t\n").is_err());
        assert!(stream("GET\tc/a\th\t\t\t\t\n").is_err());
        assert!(stream("").is_err());
    }
}
