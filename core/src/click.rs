//! What a click is: its class, the request the classifier sees, the verdict, and the device type.
//! The classifier itself is in [`crate::classify`].

/// Click classes, as stored in `smslink.click.class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClickClass {
    Human,
    Preview,
    Bot,
    Scanner,
    Suspect,
}

impl ClickClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ClickClass::Human => "human",
            ClickClass::Preview => "preview",
            ClickClass::Bot => "bot",
            ClickClass::Scanner => "scanner",
            ClickClass::Suspect => "suspect",
        }
    }

    pub fn parse(s: &str) -> Option<ClickClass> {
        Some(match s {
            "human" => ClickClass::Human,
            "preview" => ClickClass::Preview,
            "bot" => ClickClass::Bot,
            "scanner" => ClickClass::Scanner,
            "suspect" => ClickClass::Suspect,
            _ => return None,
        })
    }
}

/// What the classifier sees of one request. Header names are matched case-insensitively.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub user_agent: Option<&'a str>,
    pub headers: &'a [(String, String)],
    pub referrer: Option<&'a str>,
}

impl Request<'_> {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A verdict: the class and the reason codes that explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub class: ClickClass,
    pub reasons: Vec<String>,
}

/// Device types, as stored in `smslink.click.device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Mobile,
    Tablet,
    Desktop,
    Other,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
            Device::Desktop => "desktop",
            Device::Other => "other",
        }
    }
}

/// Device type from the User-Agent, with the woothee parser (categories smartphone,
/// mobilephone, pc, crawler, appliance, misc). Woothee files tablets under smartphone, so iPads,
/// Android devices without "Mobile" and declared tablets are told apart here.
pub fn device(user_agent: Option<&str>) -> Device {
    let Some(ua) = user_agent.filter(|u| !u.trim().is_empty()) else {
        return Device::Other;
    };
    let Some(r) = woothee::parser::Parser::new().parse(ua) else {
        return Device::Other;
    };
    match r.category {
        "smartphone" | "mobilephone" => {
            let tablet = r.name.contains("iPad")
                || ua.contains("iPad")
                || ua.contains("Tablet")
                || (ua.contains("Android") && !ua.contains("Mobile"));
            if tablet {
                Device::Tablet
            } else {
                Device::Mobile
            }
        }
        "pc" => Device::Desktop,
        _ => Device::Other,
    }
}

/// Operating-system family from the User-Agent: `ios`, `android`, `windows`, `macos`,
/// `linux`, `other` (crawlers and unknown agents), or `unknown` for no User-Agent. Woothee names
/// iPads "iPad" and iPhones "iPhone"; both are iOS here.
pub fn os(user_agent: Option<&str>) -> &'static str {
    let Some(ua) = user_agent.filter(|u| !u.trim().is_empty()) else {
        return "unknown";
    };
    let Some(r) = woothee::parser::Parser::new().parse(ua) else {
        return "other";
    };
    match r.os {
        "iPhone" | "iPad" | "iPod" | "iOS" => "ios",
        "Android" => "android",
        "Mac OSX" | "Mac OS Classic" => "macos",
        "Linux" | "ChromeOS" => "linux",
        o if o.starts_with("Windows") => "windows",
        _ => "other",
    }
}

/// The host part of a Host header: trimmed, lower-cased, without a port or trailing dot.
pub fn normalize_host(host: &str) -> String {
    let h = host.trim();
    let h = match h.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => h,
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
    const PIXEL: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
    const GALAXY_TAB: &str = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";
    const WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

    #[test]
    fn os_families() {
        assert_eq!(os(Some(IPHONE)), "ios");
        assert_eq!(os(Some(IPAD)), "ios");
        assert_eq!(os(Some(PIXEL)), "android");
        assert_eq!(os(Some(GALAXY_TAB)), "android");
        assert_eq!(os(Some(MAC)), "macos");
        assert_eq!(os(Some(WINDOWS)), "windows");
        assert_eq!(
            os(Some("Googlebot/2.1 (+http://www.google.com/bot.html)")),
            "other"
        );
        assert_eq!(os(Some("  ")), "unknown");
        assert_eq!(os(None), "unknown");
    }
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    #[test]
    fn hosts_without_port_case_or_trailing_dot() {
        assert_eq!(normalize_host("SMS.Example.com"), "sms.example.com");
        assert_eq!(normalize_host("sms.example.com:8080"), "sms.example.com");
        assert_eq!(normalize_host("sms.example.com."), "sms.example.com");
        assert_eq!(normalize_host(" sms.example.com "), "sms.example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]:80");
    }

    #[test]
    fn devices() {
        assert_eq!(device(Some(IPHONE)), Device::Mobile);
        assert_eq!(device(Some(PIXEL)), Device::Mobile);
        assert_eq!(device(Some(IPAD)), Device::Tablet);
        assert_eq!(device(Some(GALAXY_TAB)), Device::Tablet);
        assert_eq!(device(Some(MAC)), Device::Desktop);
        assert_eq!(device(Some(WINDOWS)), Device::Desktop);
        assert_eq!(device(Some(GOOGLEBOT)), Device::Other);
        assert_eq!(device(Some("curl/8.4.0")), Device::Other);
        assert_eq!(device(Some("")), Device::Other);
        assert_eq!(device(None), Device::Other);
    }
}

/// Splits a batch of hits, in time order, into waves that can each be logged by one statement
/// with the same result as logging the hits one at a time. `keys` are each hit's client address,
/// message and time (µs). A hit goes into the wave after the last wave that holds an earlier hit
/// on the same message, or from the same address at most `ip_window` µs earlier, because those
/// hits are part of its classifier context (the preview and burst signals; the address signal
/// looks back `ip_window` only) and of its first-click claim. Hits with nothing in common share
/// the first wave, so a batch of unrelated clicks is still one statement.
pub fn waves<A: Eq + std::hash::Hash + Clone, M: Eq + std::hash::Hash + Copy>(
    keys: &[(Option<A>, M, i64)],
    ip_window: i64,
) -> Vec<usize> {
    use std::collections::HashMap;
    // Per address, its latest hit (time, wave): in time order, the latest hit within the window
    // has the highest wave of all the address's hits within it.
    let mut by_ip: HashMap<A, (i64, usize)> = HashMap::new();
    let mut by_message: HashMap<M, usize> = HashMap::new();
    keys.iter()
        .map(|(ip, message, at)| {
            let after_ip = ip
                .as_ref()
                .and_then(|a| by_ip.get(a))
                .filter(|(t, _)| at.saturating_sub(*t) <= ip_window)
                .map(|&(_, w)| w);
            let after_message = by_message.get(message).copied();
            let wave = after_ip.max(after_message).map_or(0, |w| w + 1);
            if let Some(a) = ip {
                by_ip.insert(a.clone(), (*at, wave));
            }
            by_message.insert(*message, wave);
            wave
        })
        .collect()
}

#[cfg(test)]
mod wave_tests {
    use super::waves;

    #[test]
    fn unrelated_hits_share_one_wave_and_related_ones_follow() {
        let keys = [
            (Some("10.0.0.1"), 1, 0),
            (Some("10.0.0.2"), 2, 1),
            (Some("10.0.0.1"), 3, 2), // same address as the first
            (Some("10.0.0.3"), 2, 3), // same message as the second
            (None, 4, 4),
            (None, 4, 5),              // same message, no address
            (Some("10.0.0.1"), 5, 6),  // after the third
            (Some("10.0.0.1"), 6, 20), // same address, but beyond the window of 10
        ];
        assert_eq!(waves(&keys, 10), vec![0, 0, 1, 1, 0, 1, 2, 0]);
    }

    #[test]
    fn within_a_wave_no_two_hits_share_a_message_or_an_address_within_the_window() {
        // A deterministic pseudo-random batch with many repeats, in time order.
        let keys: Vec<(Option<u32>, u32, i64)> = (0u32..2000)
            .map(|i| {
                let h = i.wrapping_mul(2_654_435_761);
                (
                    (h % 7 != 0).then_some(h % 97),
                    (h >> 8) % 301,
                    i64::from(i) * 3,
                )
            })
            .collect();
        let window = 40;
        let w = waves(&keys, window);
        for (i, a) in keys.iter().enumerate() {
            for (j, b) in keys.iter().enumerate().skip(i + 1) {
                let related = a.1 == b.1 || (a.0.is_some() && a.0 == b.0 && b.2 - a.2 <= window);
                if related {
                    assert!(w[j] > w[i], "hit {j} must come after related hit {i}");
                }
            }
        }
        // The window saves statements: without it the same batch needs more waves.
        let unbounded = waves(&keys, i64::MAX);
        assert!(w.iter().max() < unbounded.iter().max());
    }
}
