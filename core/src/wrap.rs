//! Finding the URLs in an SMS body and replacing them with tracked short links.
//!
//! URLs are found with `linkify`, which handles trailing punctuation, balanced parentheses and
//! adjacent non-ASCII text the way a reader expects. Bare `brand.com/sale` links are accepted and
//! given an `https://` scheme. Only http(s) destinations can be tracked; any other scheme is an
//! error rather than a link silently left untracked.

use linkify::{LinkFinder, LinkKind as LinkifyKind};
use regex::Regex;
use std::fmt;
use url::Url;

/// The role of a link in a message; metrics treat each kind differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Cta,
    Secondary,
    Optout,
    Transactional,
}

impl LinkKind {
    pub const ALL: [LinkKind; 4] = [
        LinkKind::Cta,
        LinkKind::Secondary,
        LinkKind::Optout,
        LinkKind::Transactional,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Cta => "cta",
            LinkKind::Secondary => "secondary",
            LinkKind::Optout => "optout",
            LinkKind::Transactional => "transactional",
        }
    }

    pub fn parse(s: &str) -> Option<LinkKind> {
        LinkKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WrapError {
    UnsupportedScheme { url: String, scheme: String },
    InvalidUrl { url: String, reason: String },
    KindCount { given: usize, found: usize },
    UnknownKind(String),
}

impl fmt::Display for WrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WrapError::UnsupportedScheme { url, scheme } => write!(
                f,
                "cannot track URL \"{url}\": scheme \"{scheme}\" is not allowed (only http and https)"
            ),
            WrapError::InvalidUrl { url, reason } => {
                write!(f, "invalid URL \"{url}\": {reason}")
            }
            WrapError::KindCount { given, found } => write!(
                f,
                "{given} link kinds were given but the body has {found} URLs (give one kind per URL, in order)"
            ),
            WrapError::UnknownKind(k) => write!(
                f,
                "unknown link kind \"{k}\" (expected cta, secondary, optout or transactional)"
            ),
        }
    }
}

impl std::error::Error for WrapError {}

/// Checks that a destination can be tracked and returns its canonical, header-safe form.
pub fn validate_destination(raw: &str) -> Result<String, WrapError> {
    let invalid = |reason: &str| WrapError::InvalidUrl {
        url: raw.to_string(),
        reason: reason.to_string(),
    };
    if raw.chars().any(char::is_control) {
        return Err(invalid("it contains control characters"));
    }
    let url = Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(WrapError::UnsupportedScheme {
                url: raw.to_string(),
                scheme: other.to_string(),
            })
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "it contains credentials (user@host), a common phishing pattern",
        ));
    }
    Ok(url.into())
}

/// A host and path prefix of the brand's own tracking domains; links already on one are left
/// as they are, so wrapping an already wrapped body changes nothing.
#[derive(Debug, Clone)]
pub struct TrackedPrefix {
    pub host: String,
    pub prefix: String,
}

/// The short link for a token.
pub fn short_url(host: &str, prefix: &str, token: &str) -> String {
    format!("https://{host}/{prefix}/{token}")
}

/// One URL of the body, to become one link row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLink {
    /// 1-based position among the tracked URLs of the body.
    pub position: i32,
    pub destination: String,
    pub kind: LinkKind,
}

/// A body split around its trackable URLs: `pieces.len() == links.len() + 1`.
#[derive(Debug, Clone)]
pub struct Template {
    pieces: Vec<String>,
    pub links: Vec<PlannedLink>,
}

/// How to give each URL its kind.
#[derive(Debug, Clone, Copy)]
pub struct KindRules<'a> {
    /// Opt-out URL pattern of the campaign or brand.
    pub optout: Option<&'a Regex>,
    /// Transactional campaigns mark every non-opt-out link `transactional`.
    pub transactional: bool,
    /// Caller-given kinds, one per URL in order; they override the rules.
    pub overrides: Option<&'a [LinkKind]>,
}

/// Characters that end a URL for a human reader: CJK and full-width punctuation, general
/// punctuation (curly quotes, dashes, ellipsis), guillemets and emoji.
fn ends_url(c: char) -> bool {
    matches!(c as u32,
        0x00AB | 0x00BB | 0x2000..=0x206F | 0x2190..=0x2BFF | 0x3000..=0x303F
        | 0xFE30..=0xFE4F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40
        | 0xFF5B..=0xFF65 | 0x1F000..=0x1FAFF)
}

fn is_tracked(url: &Url, tracked: &[TrackedPrefix]) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let first = url.path_segments().and_then(|mut s| s.next()).unwrap_or("");
    tracked
        .iter()
        .any(|t| t.host.eq_ignore_ascii_case(host) && t.prefix == first)
}

/// Finds the trackable URLs of `body` and plans one link per URL.
pub fn plan(
    body: &str,
    tracked: &[TrackedPrefix],
    rules: KindRules<'_>,
) -> Result<Template, WrapError> {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkifyKind::Url]);
    finder.url_must_have_scheme(false);

    let mut pieces = Vec::new();
    let mut found = Vec::new();
    let mut last = 0;
    for link in finder.links(body) {
        // linkify runs on through non-ASCII marks (», ”, 。, emoji) that a reader sees as
        // text after the link: cut there, then trim trailing non-ASCII symbols, keeping
        // non-ASCII letters and digits (x.com/été).
        let raw = link.as_str();
        let cut = raw.find(ends_url).unwrap_or(raw.len());
        let text = raw[..cut].trim_end_matches(|c: char| !c.is_ascii() && !c.is_alphanumeric());
        let end = link.start() + text.len();
        let has_scheme = text.contains("://");
        let candidate = if has_scheme {
            text.to_string()
        } else {
            format!("https://{text}")
        };
        let destination = validate_destination(&candidate)?;
        if let Ok(parsed) = Url::parse(&destination) {
            if is_tracked(&parsed, tracked) {
                continue;
            }
        }
        pieces.push(body[last..link.start()].to_string());
        last = end;
        found.push(destination);
    }
    pieces.push(body[last..].to_string());

    if let Some(kinds) = rules.overrides {
        if kinds.len() != found.len() {
            return Err(WrapError::KindCount {
                given: kinds.len(),
                found: found.len(),
            });
        }
    }
    let mut seen_primary = false;
    let links = found
        .into_iter()
        .enumerate()
        .map(|(i, destination)| {
            let kind = match rules.overrides {
                Some(kinds) => kinds[i],
                None if rules.optout.is_some_and(|re| re.is_match(&destination)) => {
                    LinkKind::Optout
                }
                None if rules.transactional => LinkKind::Transactional,
                None if !seen_primary => {
                    seen_primary = true;
                    LinkKind::Cta
                }
                None => LinkKind::Secondary,
            };
            PlannedLink {
                position: i as i32 + 1,
                destination,
                kind,
            }
        })
        .collect();
    Ok(Template { pieces, links })
}

impl Template {
    /// The body with the i-th URL replaced by `short_urls[i]`.
    pub fn render(&self, short_urls: &[String]) -> String {
        debug_assert_eq!(short_urls.len(), self.links.len());
        let extra: usize = short_urls.iter().map(String::len).sum();
        let mut out =
            String::with_capacity(self.pieces.iter().map(String::len).sum::<usize>() + extra);
        for (i, piece) in self.pieces.iter().enumerate() {
            out.push_str(piece);
            if let Some(u) = short_urls.get(i) {
                out.push_str(u);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> KindRules<'static> {
        KindRules {
            optout: None,
            transactional: false,
            overrides: None,
        }
    }

    fn dests(body: &str) -> Vec<String> {
        plan(body, &[], rules())
            .expect("plan")
            .links
            .into_iter()
            .map(|l| l.destination)
            .collect()
    }

    #[test]
    fn finds_schemes_and_bare_links() {
        assert_eq!(
            dests("Sale! https://shop.example.com/sale?x=1 and http://a.io/b or brand.com/sale"),
            vec![
                "https://shop.example.com/sale?x=1",
                "http://a.io/b",
                "https://brand.com/sale"
            ]
        );
    }

    #[test]
    fn punctuation_parentheses_emoji_and_non_ascii() {
        assert_eq!(dests("Go to https://x.com/a."), vec!["https://x.com/a"]);
        assert_eq!(dests("Go to https://x.com/a!"), vec!["https://x.com/a"]);
        assert_eq!(dests("Go (https://x.com/a) now"), vec!["https://x.com/a"]);
        assert_eq!(
            dests("Wiki https://en.wikipedia.org/wiki/Rust_(programming_language), ok"),
            vec!["https://en.wikipedia.org/wiki/Rust_(programming_language)"]
        );
        assert_eq!(dests("Tap https://x.com/a 😀 now"), vec!["https://x.com/a"]);
        assert_eq!(dests("Tap https://x.com/a, then"), vec!["https://x.com/a"]);
        assert_eq!(dests("«https://x.com/a»"), vec!["https://x.com/a"]);
        assert_eq!(dests("\"https://x.com/a\""), vec!["https://x.com/a"]);
        assert_eq!(
            dests("Soldes: x.com/été!"),
            vec!["https://x.com/%C3%A9t%C3%A9"]
        );
        assert_eq!(dests("見て https://x.com/a。今日"), vec!["https://x.com/a"]);
        assert_eq!(dests("“https://x.com/a”"), vec!["https://x.com/a"]);
        assert_eq!(dests("https://x.com/a😀"), vec!["https://x.com/a"]);
    }

    #[test]
    fn emails_and_plain_words_are_not_links() {
        assert!(dests("Mail bob@example.com or reply STOP. Ends 5.30pm.").is_empty());
    }

    #[test]
    fn rejects_other_schemes_and_credentials() {
        let err = plan("see ftp://files.example.com/x", &[], rules()).expect_err("ftp");
        assert!(matches!(err, WrapError::UnsupportedScheme { ref scheme, .. } if scheme == "ftp"));
        assert!(validate_destination("javascript:alert(1)").is_err());
        assert!(validate_destination("data:text/html,hi").is_err());
        assert!(validate_destination("https://user:pw@x.com/").is_err());
        assert!(validate_destination("https://x.com/\r\nSet-Cookie: a").is_err());
        assert!(validate_destination("not a url").is_err());
        assert_eq!(
            validate_destination("HTTPS://Shop.Example.com").as_deref(),
            Ok("https://shop.example.com/")
        );
    }

    #[test]
    fn kinds_by_rule_and_override() {
        let re = Regex::new(r"/(unsub|stop)").expect("regex");
        let body = "Deal https://x.com/a more https://x.com/b stop: https://x.com/unsub";
        let t = plan(
            body,
            &[],
            KindRules {
                optout: Some(&re),
                ..rules()
            },
        )
        .expect("plan");
        let kinds: Vec<_> = t.links.iter().map(|l| (l.position, l.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (1, LinkKind::Cta),
                (2, LinkKind::Secondary),
                (3, LinkKind::Optout)
            ]
        );
        let t = plan(
            body,
            &[],
            KindRules {
                optout: Some(&re),
                transactional: true,
                overrides: None,
            },
        )
        .expect("plan");
        assert_eq!(t.links[0].kind, LinkKind::Transactional);
        assert_eq!(t.links[2].kind, LinkKind::Optout);
        let ov = [LinkKind::Secondary, LinkKind::Cta, LinkKind::Optout];
        let t = plan(
            body,
            &[],
            KindRules {
                overrides: Some(&ov),
                ..rules()
            },
        )
        .expect("plan");
        assert_eq!(t.links[1].kind, LinkKind::Cta);
        let err = plan(
            body,
            &[],
            KindRules {
                overrides: Some(&ov[..2]),
                ..rules()
            },
        )
        .expect_err("count");
        assert_eq!(err, WrapError::KindCount { given: 2, found: 3 });
    }

    #[test]
    fn render_and_already_tracked_links() {
        let tracked = [TrackedPrefix {
            host: "sms.example.com".into(),
            prefix: "c".into(),
        }];
        let body = "A https://x.com/a B https://sms.example.com/c/1abcdefgh C x.com/b";
        let t = plan(body, &tracked, rules()).expect("plan");
        assert_eq!(t.links.len(), 2);
        let out = t.render(&["S1".into(), "S2".into()]);
        assert_eq!(out, "A S1 B https://sms.example.com/c/1abcdefgh C S2");
        // Re-wrapping the output finds nothing new.
        let wrapped = t.render(&[
            short_url("sms.example.com", "c", "1aaaaaaaa"),
            short_url("sms.example.com", "c", "1bbbbbbbb"),
        ]);
        assert!(plan(&wrapped, &tracked, rules())
            .expect("plan")
            .links
            .is_empty());
    }

    #[test]
    fn no_urls_renders_body_unchanged() {
        let t = plan("Reply STOP to opt out", &[], rules()).expect("plan");
        assert!(t.links.is_empty());
        assert_eq!(t.render(&[]), "Reply STOP to opt out");
    }
}
