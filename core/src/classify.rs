//! The click classifier: the one function `track_click`, `smslink.classify` and
//! `smslink.reclassify` call to tell humans from link previews, bots and security scanners.
//!
//! A verdict comes from three kinds of signal:
//! - **the request itself**: User-Agent rules (a data file of patterns, `data/classifier.tsv`,
//!   that users extend), `HEAD`, prefetch headers, a missing User-Agent, the Referer's host;
//! - **context the database supplies**: seconds since delivery, the most specific loaded IP range
//!   that holds the client address, and how busy the address and the link were just before;
//! - **thresholds** ([`Thresholds`]), which are settings in SQL.
//!
//! Signals are *strong* (each decides a class alone: a declared preview fetcher, a crawler, a
//! scanner range, a scanner's referrer, a gateway burst) or *weak* (each alone only makes a click
//! `suspect`; two together make it `scanner`): a click faster than a human can physically tap,
//! a click before the delivery receipt, an address in a range marked `suspect` (a data centre),
//! several addresses on one link within seconds of delivery, and an address hitting several
//! messages within seconds. See docs/classification.md for the rules and their defaults.

use crate::click::{ClickClass, Request, Verdict};
use regex::{RegexSet, RegexSetBuilder};

/// The rules shipped with the extension. Users' rules are tried first.
pub const BUILT_IN_RULES: &str = include_str!("../data/classifier.tsv");

/// Which value a rule is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    UserAgent,
    Referrer,
}

/// One pattern rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub kind: RuleKind,
    pub class: ClickClass,
    pub reason: String,
    pub pattern: String,
}

impl Rule {
    /// Checks one rule as a user would enter it, with a message that says what to fix.
    pub fn new(kind: &str, class: &str, reason: &str, pattern: &str) -> Result<Rule, String> {
        let kind = match kind {
            "ua" => RuleKind::UserAgent,
            "referrer" => RuleKind::Referrer,
            other => return Err(format!("unknown rule kind {other:?}: use ua or referrer")),
        };
        let class = match ClickClass::parse(class) {
            Some(ClickClass::Suspect) | None => {
                return Err(format!(
                    "unknown rule class {class:?}: use human, preview, bot or scanner"
                ))
            }
            Some(c) => c,
        };
        if reason.is_empty() || reason.chars().any(|c| c.is_whitespace() || c == '\u{1f}') {
            return Err(format!(
                "invalid reason code {reason:?}: a non-empty code without spaces, such as ua:bot:mycrawler"
            ));
        }
        if let Err(e) = regex::RegexBuilder::new(pattern)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
        {
            return Err(format!("invalid pattern {pattern:?}: {e}"));
        }
        Ok(Rule {
            kind,
            class,
            reason: reason.to_string(),
            pattern: pattern.to_string(),
        })
    }
}

/// Parses the tab-separated rule format of `data/classifier.tsv`.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [kind, class, reason, pattern] = fields[..] else {
            return Err(format!(
                "line {}: want 4 tab-separated fields, got {}",
                n + 1,
                fields.len()
            ));
        };
        out.push(
            Rule::new(kind, class, reason, pattern).map_err(|e| format!("line {}: {e}", n + 1))?,
        );
    }
    Ok(out)
}

/// Thresholds of the timing and behaviour signals (SQL settings `smslink.classifier_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// A click sooner than this after delivery is `timing:too_fast`.
    pub min_human_seconds: f64,
    /// A click more than this before the delivery receipt is `timing:before_delivery`.
    pub before_delivery_tolerance_seconds: f64,
    /// `burst:ip`: the address hit at least this many other messages ...
    pub burst_ip_messages: u32,
    /// ... within this many seconds before the click.
    pub burst_ip_window_seconds: f64,
    /// `burst:token`: at least this many other addresses hit the same message's links ...
    pub burst_token_ips: u32,
    /// ... and the click came within this many seconds of delivery.
    pub burst_token_window_seconds: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_human_seconds: 3.0,
            before_delivery_tolerance_seconds: 2.0,
            burst_ip_messages: 3,
            burst_ip_window_seconds: 10.0,
            burst_token_ips: 1,
            burst_token_window_seconds: 60.0,
        }
    }
}

/// What the database knows about a click beyond the request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Context<'a> {
    /// Click time minus the message's delivery time; `None` if not delivered (yet).
    pub seconds_since_delivery: Option<f64>,
    /// The most specific loaded IP range holding the client address: label and class.
    pub ip_range: Option<(&'a str, ClickClass)>,
    /// Distinct other messages this address hit within `burst_ip_window_seconds` before.
    pub ip_recent_messages: u32,
    /// Distinct other addresses whose earlier hits on this message were human or suspect (not
    /// already explained as a preview, bot or scanner), within `burst_token_window_seconds` of
    /// delivery.
    pub message_recent_ips: u32,
    /// A preview fetch of this message came before this click.
    pub previewed: bool,
}

/// Compiled rules and thresholds: build once per backend, classify many times.
#[derive(Debug, Clone)]
pub struct Classifier {
    ua: RegexSet,
    ua_rules: Vec<(ClickClass, String)>,
    referrer: RegexSet,
    referrer_rules: Vec<(ClickClass, String)>,
    pub thresholds: Thresholds,
}

/// Headers by which browsers announce a prefetch or prerender rather than a navigation.
const PREFETCH_HEADERS: [&str; 3] = ["purpose", "sec-purpose", "x-moz"];

fn compile(rules: &[&Rule]) -> Result<RegexSet, String> {
    RegexSetBuilder::new(rules.iter().map(|r| r.pattern.as_str()))
        .case_insensitive(true)
        .size_limit(32 << 20)
        .dfa_size_limit(32 << 20)
        .build()
        .map_err(|e| format!("the rule set does not compile: {e}"))
}

impl Classifier {
    /// Compiles `rules` in order: the first matching rule of each kind decides.
    pub fn new(rules: &[Rule], thresholds: Thresholds) -> Result<Classifier, String> {
        let of = |kind| rules.iter().filter(move |r: &&Rule| r.kind == kind);
        let ua: Vec<&Rule> = of(RuleKind::UserAgent).collect();
        let referrer: Vec<&Rule> = of(RuleKind::Referrer).collect();
        Ok(Classifier {
            ua: compile(&ua)?,
            ua_rules: ua.iter().map(|r| (r.class, r.reason.clone())).collect(),
            referrer: compile(&referrer)?,
            referrer_rules: referrer
                .iter()
                .map(|r| (r.class, r.reason.clone()))
                .collect(),
            thresholds,
        })
    }

    /// The built-in rules with default thresholds.
    pub fn built_in() -> Classifier {
        let rules = parse_rules(BUILT_IN_RULES).expect("data/classifier.tsv is checked by tests");
        Classifier::new(&rules, Thresholds::default()).expect("built-in rules compile")
    }

    /// The first User-Agent rule that matches: its class and reason.
    pub fn match_user_agent(&self, ua: &str) -> Option<(ClickClass, &str)> {
        first_match(&self.ua, &self.ua_rules, ua)
    }

    fn match_referrer(&self, referrer: &str) -> Option<(ClickClass, &str)> {
        let host = referrer_host(referrer)?;
        first_match(&self.referrer, &self.referrer_rules, &host)
    }

    /// Classifies one click. Pure: the same request and context always give the same verdict.
    pub fn classify(&self, req: &Request<'_>, ctx: &Context<'_>) -> Verdict {
        let t = &self.thresholds;
        let mut strong: Vec<(ClickClass, String)> = Vec::new();
        let mut weak: Vec<String> = Vec::new();
        let mut info: Vec<String> = Vec::new();

        match req.user_agent.map(str::trim).filter(|u| !u.is_empty()) {
            None => strong.push((ClickClass::Bot, "no_user_agent".into())),
            Some(ua) => match self.match_user_agent(ua) {
                Some((ClickClass::Human, reason)) => info.push(reason.to_string()),
                Some((class, reason)) => strong.push((class, reason.to_string())),
                None => {}
            },
        }
        if req.method.eq_ignore_ascii_case("HEAD") {
            strong.push((ClickClass::Preview, "method:head".into()));
        }
        if PREFETCH_HEADERS.iter().any(|h| {
            req.header(h)
                .is_some_and(|v| v.to_ascii_lowercase().contains("prefetch"))
        }) {
            strong.push((ClickClass::Preview, "header:prefetch".into()));
        }
        if let Some((class, reason)) = req.referrer.and_then(|r| self.match_referrer(r)) {
            if class == ClickClass::Human {
                info.push(reason.to_string());
            } else {
                strong.push((class, reason.to_string()));
            }
        }
        if let Some((label, class)) = ctx.ip_range {
            let code = format!("ip:range:{label}");
            match class {
                ClickClass::Human => info.push(code),
                ClickClass::Suspect => weak.push(code),
                c => strong.push((c, code)),
            }
        }
        if let Some(s) = ctx.seconds_since_delivery {
            if s < -t.before_delivery_tolerance_seconds {
                weak.push("timing:before_delivery".into());
            } else if s < t.min_human_seconds {
                weak.push("timing:too_fast".into());
            }
        }
        let mut behaviour: Option<String> = None;
        if t.burst_ip_messages > 0 && ctx.ip_recent_messages >= t.burst_ip_messages {
            behaviour = Some("burst:ip".into());
        } else if ctx.ip_recent_messages > 0 && t.burst_ip_messages > 1 {
            // Part of the way to a burst: one more sign makes it a scanner.
            if ctx.ip_recent_messages + 1 >= t.burst_ip_messages {
                weak.push("burst:ip".into());
            }
        }
        let fresh = ctx
            .seconds_since_delivery
            .is_none_or(|s| s <= t.burst_token_window_seconds);
        if t.burst_token_ips > 0 && ctx.message_recent_ips >= t.burst_token_ips && fresh {
            weak.push("burst:token".into());
        }

        // The strongest class wins; every signal that fired is explained.
        let rank = |c: ClickClass| match c {
            ClickClass::Scanner => 0,
            ClickClass::Bot => 1,
            ClickClass::Preview => 2,
            _ => 3,
        };
        // What the client declared (User-Agent, method, headers, referrer) or a range the user
        // classed decides first: a crawler that hits many links in a burst is still a bot.
        // Behaviour alone (a gateway burst) makes a scanner.
        let class = if let Some(c) = strong.iter().map(|(c, _)| *c).min_by_key(|c| rank(*c)) {
            c
        } else if behaviour.is_some() || weak.len() >= 2 {
            ClickClass::Scanner
        } else if weak.len() == 1 {
            ClickClass::Suspect
        } else {
            ClickClass::Human
        };
        // "Preview, then human": noted on a click that counts as human.
        if ctx.previewed && class == ClickClass::Human {
            info.push("after_preview".into());
        }
        let mut reasons: Vec<String> = strong.into_iter().map(|(_, r)| r).collect();
        reasons.extend(behaviour);
        reasons.extend(weak);
        reasons.extend(info);
        Verdict { class, reasons }
    }
}

fn first_match<'a>(
    set: &RegexSet,
    rules: &'a [(ClickClass, String)],
    value: &str,
) -> Option<(ClickClass, &'a str)> {
    if rules.is_empty() {
        return None;
    }
    let first = set.matches(value).into_iter().next()?;
    rules.get(first).map(|(c, r)| (*c, r.as_str()))
}

/// The host of a Referer value (a URL, or a bare host), lower-cased.
fn referrer_host(referrer: &str) -> Option<String> {
    let r = referrer.trim();
    if r.is_empty() {
        return None;
    }
    let host = match url::Url::parse(r) {
        Ok(u) => u.host_str()?.to_string(),
        Err(_) => r.split(['/', '?', '#']).next()?.to_string(),
    };
    Some(crate::click::normalize_host(&host))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

    fn get(ua: &str) -> Request<'_> {
        Request {
            method: "GET",
            user_agent: Some(ua),
            headers: &[],
            referrer: None,
        }
    }

    fn verdict(c: &Classifier, req: &Request<'_>, ctx: &Context<'_>) -> (ClickClass, Vec<String>) {
        let v = c.classify(req, ctx);
        (v.class, v.reasons)
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn built_in_rules_parse_and_compile() {
        let rules = parse_rules(BUILT_IN_RULES).unwrap();
        assert!(rules.len() > 60);
        assert!(BUILT_IN_RULES.contains("# version\t"));
        Classifier::new(&rules, Thresholds::default()).unwrap();
    }

    #[test]
    fn user_agent_rules() {
        let c = Classifier::built_in();
        let ctx = Context::default();
        assert_eq!(verdict(&c, &get(IPHONE), &ctx), (ClickClass::Human, vec![]));
        let imessage = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0";
        assert_eq!(
            verdict(&c, &get(imessage), &ctx),
            (ClickClass::Preview, s(&["ua:preview:imessage"]))
        );
        assert_eq!(
            verdict(&c, &get("WhatsApp/2.23.20.0 A"), &ctx),
            (ClickClass::Preview, s(&["ua:preview:whatsapp"]))
        );
        assert_eq!(
            verdict(&c, &get("curl/8.4.0"), &ctx),
            (ClickClass::Bot, s(&["ua:library"]))
        );
        assert_eq!(
            verdict(
                &c,
                &get("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
                &ctx
            )
            .0,
            ClickClass::Bot
        );
        let fb_iab = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/440.0.0.35.111;FBBV/123;FBDV/iPhone14,2;FBMD/iPhone;FBSN/iOS;FBSV/17.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]";
        assert_eq!(
            verdict(&c, &get(fb_iab), &ctx),
            (ClickClass::Human, s(&["ua:in_app:facebook"]))
        );
        let cubot = "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36";
        assert_eq!(verdict(&c, &get(cubot), &ctx).0, ClickClass::Human);
        assert_eq!(
            verdict(
                &c,
                &get("Mozilla/5.0 (compatible; Proofpoint URL Defense)"),
                &ctx
            )
            .0,
            ClickClass::Scanner
        );
    }

    #[test]
    fn request_signals() {
        let c = Classifier::built_in();
        let ctx = Context::default();
        let empty = Request {
            user_agent: Some("  "),
            ..get(IPHONE)
        };
        assert_eq!(
            verdict(&c, &empty, &ctx),
            (ClickClass::Bot, s(&["no_user_agent"]))
        );
        let none = Request {
            user_agent: None,
            ..get(IPHONE)
        };
        assert_eq!(verdict(&c, &none, &ctx).0, ClickClass::Bot);
        let head = Request {
            method: "head",
            ..get(IPHONE)
        };
        assert_eq!(
            verdict(&c, &head, &ctx),
            (ClickClass::Preview, s(&["method:head"]))
        );
        for (k, v) in [
            ("Purpose", "prefetch"),
            ("sec-purpose", "prefetch;prerender"),
            ("X-Moz", "Prefetch"),
        ] {
            let hs = vec![(k.to_string(), v.to_string())];
            let r = Request {
                headers: &hs,
                ..get(IPHONE)
            };
            assert_eq!(
                verdict(&c, &r, &ctx),
                (ClickClass::Preview, s(&["header:prefetch"])),
                "{k}"
            );
        }
        let hs = vec![("Sec-Purpose".to_string(), "prerender".to_string())];
        assert_eq!(
            verdict(
                &c,
                &Request {
                    headers: &hs,
                    ..get(IPHONE)
                },
                &ctx
            )
            .0,
            ClickClass::Human
        );
        // A library doing HEAD is a bot, and both reasons are given.
        let curl_head = Request {
            method: "HEAD",
            ..get("curl/8.4.0")
        };
        assert_eq!(
            verdict(&c, &curl_head, &ctx),
            (ClickClass::Bot, s(&["ua:library", "method:head"]))
        );
        for r in [
            "https://urlscan.io/result/abc/",
            "https://nam12.safelinks.protection.outlook.com/?url=x",
            "urldefense.com",
        ] {
            let req = Request {
                referrer: Some(r),
                ..get(IPHONE)
            };
            assert_eq!(
                verdict(&c, &req, &ctx),
                (ClickClass::Scanner, s(&["referrer:scanner"])),
                "{r}"
            );
        }
        let req = Request {
            referrer: Some("https://www.google.com/"),
            ..get(IPHONE)
        };
        assert_eq!(verdict(&c, &req, &ctx).0, ClickClass::Human);
    }

    #[test]
    fn timing_ip_and_bursts() {
        let c = Classifier::built_in();
        let at = |s: f64| Context {
            seconds_since_delivery: Some(s),
            ..Context::default()
        };
        assert_eq!(
            verdict(&c, &get(IPHONE), &at(45.0)),
            (ClickClass::Human, vec![])
        );
        assert_eq!(
            verdict(&c, &get(IPHONE), &at(1.0)),
            (ClickClass::Suspect, s(&["timing:too_fast"]))
        );
        assert_eq!(verdict(&c, &get(IPHONE), &at(-1.0)).0, ClickClass::Suspect);
        assert_eq!(
            verdict(&c, &get(IPHONE), &at(-60.0)),
            (ClickClass::Suspect, s(&["timing:before_delivery"]))
        );
        let dc = Context {
            ip_range: Some(("aws", ClickClass::Suspect)),
            ..at(2.0)
        };
        assert_eq!(
            verdict(&c, &get(CHROME), &dc),
            (ClickClass::Scanner, s(&["ip:range:aws", "timing:too_fast"]))
        );
        let scanner_range = Context {
            ip_range: Some(("vendor", ClickClass::Scanner)),
            ..at(600.0)
        };
        assert_eq!(
            verdict(&c, &get(CHROME), &scanner_range),
            (ClickClass::Scanner, s(&["ip:range:vendor"]))
        );
        let office = Context {
            ip_range: Some(("office", ClickClass::Human)),
            ..at(600.0)
        };
        assert_eq!(
            verdict(&c, &get(CHROME), &office),
            (ClickClass::Human, s(&["ip:range:office"]))
        );
        let burst = Context {
            ip_recent_messages: 3,
            ..at(600.0)
        };
        assert_eq!(
            verdict(&c, &get(CHROME), &burst),
            (ClickClass::Scanner, s(&["burst:ip"]))
        );
        let near_burst = Context {
            ip_recent_messages: 2,
            ..at(600.0)
        };
        assert_eq!(
            verdict(&c, &get(CHROME), &near_burst).0,
            ClickClass::Suspect
        );
        let two_ips = Context {
            message_recent_ips: 1,
            ..at(20.0)
        };
        assert_eq!(
            verdict(&c, &get(IPHONE), &two_ips),
            (ClickClass::Suspect, s(&["burst:token"]))
        );
        let later = Context {
            message_recent_ips: 1,
            ..at(3600.0)
        };
        assert_eq!(verdict(&c, &get(IPHONE), &later).0, ClickClass::Human);
        let after_preview = Context {
            previewed: true,
            ..at(30.0)
        };
        assert_eq!(
            verdict(&c, &get(IPHONE), &after_preview),
            (ClickClass::Human, s(&["after_preview"]))
        );
    }

    #[test]
    fn user_rules_are_checked_and_come_first() {
        assert!(Rule::new("ua", "suspect", "x", "y").is_err());
        assert!(Rule::new("header", "bot", "x", "y").is_err());
        assert!(Rule::new("ua", "bot", "has space", "y").is_err());
        assert!(Rule::new("ua", "bot", "ua:bot:x", "(").is_err());
        assert!(parse_rules("ua\tbot\tonly three").is_err());
        let mut rules = vec![Rule::new("ua", "human", "ua:in_app:ours", "AcmeApp/").unwrap()];
        rules.extend(parse_rules(BUILT_IN_RULES).unwrap());
        let c = Classifier::new(&rules, Thresholds::default()).unwrap();
        let ours = "AcmeApp/2.0 curl/8.4.0";
        assert_eq!(
            verdict(&c, &get(ours), &Context::default()).0,
            ClickClass::Human
        );
        assert_eq!(
            verdict(&Classifier::built_in(), &get(ours), &Context::default()).0,
            ClickClass::Bot
        );
    }
}
