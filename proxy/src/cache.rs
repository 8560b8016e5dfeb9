//! The warm link cache: what the proxy needs to answer a tap without asking the database.
//!
//! One feed task ([`Cache::run_feed`]) keeps it fresh from `smslink.edge_links` (incremental,
//! by writing transaction), `smslink.edge_campaigns` (incremental) and `smslink.edge_domains`
//! (the whole list, every round); many request tasks read it ([`Cache::lookup`]). A lookup
//! reproduces the database path's rule exactly (`src/track.rs`, `click_sql`): the request host
//! must be the link's domain host; an expired link (`expires_at <= at`) goes to the first of
//! its own, its campaign's and its domain's fallback URL, or nowhere (410); the campaign's
//! click parameter and the macros are applied for each click by [`Location::url`].
//!
//! Campaign and domain settings are looked up at lookup time, not copied into links, so one
//! campaign row changed in the database reaches every cached link of the campaign at once.
//!
//! Memory is bounded by `max_links`. When full, the links that arrived first go first: a link
//! takes a new arrival number whenever the feed brings it (created or changed), and a cold
//! start loads links in id order, so those are the links created or changed longest ago (old
//! messages, the least likely to be tapped). Per link the cache keeps one slot (token and
//! subscriber key inline, times as i64 µs, ids), with destinations, fallbacks and variant keys
//! interned: every link of a campaign shares them. About 150 bytes a link (the ignored test
//! `bytes_per_link` measures it).
//!
//! Concurrency: one `parking_lot::RwLock` over the whole state. Lookups take it shared for a
//! hash probe; the feed applies its pages under the exclusive lock in chunks of [`CHUNK`] rows,
//! so a lookup never waits for more than one small chunk (parking_lot queues new readers behind
//! a waiting writer, so the writer is not starved either).

use compact_str::CompactString;
use deadpool_postgres::Pool;
use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::RwLock;
use prometheus::{Gauge, IntCounter, IntGauge, Registry};
use smslink_core::click::normalize_host;
use smslink_core::landing::{has_macro, landing_url, Macros};
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_postgres::types::{FromSql, Type};

/// The largest `max_links` accepted: slot and string ids are u32 (three strings per link at
/// most), and a bigger cache would not fit a proxy's memory anyway (about 150 bytes a link).
pub const MAX_LINKS: usize = 100_000_000;

/// Rows of one feed page (`edge_links_by_id` and `edge_links`).
const PAGE: i32 = 10_000;

/// Rows applied under one exclusive lock: small enough that a lookup waiting behind it waits
/// for tens of microseconds, not for a whole page.
const CHUNK: usize = 256;

/// Upper bound on one feed query (a stalled database must not freeze the feed forever; the
/// next round retries).
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Postgres timestamps count microseconds from 2000-01-01 UTC; this is that instant in Unix µs.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// "Never expires".
const NEVER: i64 = i64::MAX;

/// What a tap resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Not cached, or not on this host, or its campaign or domain not known yet: ask the
    /// database.
    Miss,
    Hit(Resolved),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub link_id: i64,
    pub message_id: i64,
    /// None: expired with no fallback anywhere, answer 410 (still a click, still logged).
    pub location: Option<Location>,
    /// The link had expired at the tap's time (the database logs this too, at ingestion).
    pub expired: bool,
}

/// Where a tap goes. `Ready` needs nothing per click; `Expand` needs the click id (macros or
/// the campaign's click parameter), see [`Location::url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Ready(String),
    Expand {
        url: Arc<str>,
        click_param: Option<Arc<str>>,
        /// The subscriber's external key ("" when the database has none, as the database path
        /// expands it).
        subscriber: CompactString,
        campaign: i64,
        variant: Option<Arc<str>>,
        message: i64,
    },
}

impl Location {
    /// The `Location` header for the click numbered `click_id`, exactly as
    /// `smslink.expand_destination` builds it on the database path.
    pub fn url(&self, click_id: i64) -> String {
        match self {
            Location::Ready(url) => url.clone(),
            Location::Expand {
                url,
                click_param,
                subscriber,
                campaign,
                variant,
                message,
            } => landing_url(
                url,
                click_param.as_deref(),
                &Macros {
                    click_id,
                    subscriber,
                    campaign: *campaign,
                    variant: variant.as_deref().unwrap_or(""),
                    message: *message,
                },
            ),
        }
    }

    /// True when the URL depends on the click (its id or macros): the caller must have the
    /// click id before building the answer.
    pub fn needs_click_id(&self) -> bool {
        matches!(self, Location::Expand { .. })
    }
}

/// An interned string's id (1-based, so `Option<Sid>` is 4 bytes).
type Sid = NonZeroU32;

/// Shared strings with exact reference counts: a string is dropped when its last link goes.
#[derive(Default)]
struct Interner {
    slots: Vec<Option<(Arc<str>, u32)>>,
    ids: HashMap<Arc<str>, Sid>,
    free: Vec<Sid>,
}

impl Interner {
    fn acquire(&mut self, s: &str) -> Sid {
        if let Some(&id) = self.ids.get(s) {
            if let Some(Some((_, refs))) = self.slots.get_mut(slot_of(id)) {
                *refs = refs.saturating_add(1);
            }
            return id;
        }
        let text: Arc<str> = Arc::from(s);
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[slot_of(id)] = Some((text.clone(), 1));
                id
            }
            None => {
                self.slots.push(Some((text.clone(), 1)));
                // At most 3 * MAX_LINKS strings are live at once, far below u32::MAX.
                sid(self.slots.len() - 1)
            }
        };
        self.ids.insert(text, id);
        id
    }

    fn release(&mut self, id: Sid) {
        let slot = &mut self.slots[slot_of(id)];
        let gone = match slot {
            Some((_, refs)) if *refs > 1 => {
                *refs -= 1;
                false
            }
            Some(_) => true,
            None => false,
        };
        if gone {
            if let Some((text, _)) = slot.take() {
                self.ids.remove(&text);
                self.free.push(id);
            }
        }
    }

    fn get(&self, id: Sid) -> Option<&Arc<str>> {
        self.slots.get(slot_of(id))?.as_ref().map(|(t, _)| t)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.len()
    }
}

fn slot_of(id: Sid) -> usize {
    (id.get() - 1) as usize
}

fn sid(index: usize) -> Sid {
    NonZeroU32::MIN.saturating_add(u32::try_from(index).unwrap_or(u32::MAX - 1))
}

/// One cached link.
struct Link {
    token: CompactString,
    /// The subscriber's external key, "" for NULL (the database expands NULL as "").
    subscriber: CompactString,
    pos: i64,
    link_id: i64,
    message_id: i64,
    campaign_id: i64,
    domain_id: i64,
    /// Unix µs; [`NEVER`] when the link has no expiry.
    expires_at: i64,
    destination: Sid,
    fallback: Option<Sid>,
    variant: Option<Sid>,
}

struct Campaign {
    fallback: Option<Arc<str>>,
    click_param: Option<Arc<str>>,
}

struct Domain {
    host: Box<str>,
    /// The domain's own fallback: the end of the expiry chain.
    fallback: Option<Arc<str>>,
    /// Where a tap on an unknown token goes while the database is unreachable: the domain's
    /// fallback, else the brand's.
    outage: Option<Arc<str>>,
}

/// A link as the feed sends it, decoded outside the lock.
#[derive(Debug, Clone)]
struct NewLink {
    link_id: i64,
    domain_id: i64,
    campaign_id: i64,
    message_id: i64,
    destination: String,
    fallback: Option<String>,
    expires_at: i64,
    subscriber: Option<String>,
    variant: Option<String>,
}

#[derive(Debug, Clone)]
struct LinkRow {
    token: String,
    /// None: a tombstone (or a row the cache cannot use, which must not stay cached either).
    link: Option<NewLink>,
}

#[derive(Default)]
struct State {
    hasher: DefaultHashBuilder,
    /// Token -> slot, hashed on the slot's token: 4 bytes per bucket.
    index: HashTable<u32>,
    slots: Vec<Option<Link>>,
    free: Vec<u32>,
    /// Arrival number -> slot, for eviction (lowest first); one entry per live link.
    order: BTreeMap<i64, u32>,
    /// The next arrival number: every link inserted or changed takes one.
    next_pos: i64,
    strings: Interner,
    campaigns: HashMap<i64, Campaign>,
    domains: HashMap<i64, Domain>,
    /// Domain host -> domain id, for [`Cache::domain_fallback`].
    hosts: HashMap<Box<str>, i64>,
}

impl State {
    fn find(&self, token: &str) -> Option<&Link> {
        let hash = self.hasher.hash_one(token);
        let slots = &self.slots;
        let &i = self.index.find(hash, |&i| {
            slots[i as usize].as_ref().is_some_and(|l| l.token == token)
        })?;
        slots[i as usize].as_ref()
    }

    /// Inserts or replaces a link; returns how many links were evicted to stay within `max`.
    fn upsert(&mut self, token: &str, new: &NewLink, max: usize) -> u64 {
        let hash = self.hasher.hash_one(token);
        let pos = self.next_pos;
        self.next_pos += 1;
        let State {
            hasher,
            index,
            slots,
            free,
            order,
            strings,
            ..
        } = self;
        let found = index
            .find(hash, |&i| {
                slots[i as usize].as_ref().is_some_and(|l| l.token == token)
            })
            .copied();
        // The new strings are acquired before the old ones are released, so a string both
        // versions share is never dropped and re-created.
        let link = Link {
            token: CompactString::from(token),
            subscriber: new
                .subscriber
                .as_deref()
                .map(CompactString::from)
                .unwrap_or_default(),
            pos,
            link_id: new.link_id,
            message_id: new.message_id,
            campaign_id: new.campaign_id,
            domain_id: new.domain_id,
            expires_at: new.expires_at,
            destination: strings.acquire(&new.destination),
            fallback: new.fallback.as_deref().map(|s| strings.acquire(s)),
            variant: new.variant.as_deref().map(|s| strings.acquire(s)),
        };
        match found {
            Some(i) => {
                if let Some(old) = slots[i as usize].replace(link) {
                    order.remove(&old.pos);
                    release(strings, &old);
                }
                order.insert(pos, i);
            }
            None => {
                let i = match free.pop() {
                    Some(i) => {
                        slots[i as usize] = Some(link);
                        i
                    }
                    None => {
                        slots.push(Some(link));
                        // At most MAX_LINKS + 1 slots exist (eviction follows every insert).
                        u32::try_from(slots.len() - 1).unwrap_or(u32::MAX)
                    }
                };
                index.insert_unique(hash, i, |&j| {
                    slots[j as usize]
                        .as_ref()
                        .map_or(0, |l| hasher.hash_one(l.token.as_str()))
                });
                order.insert(pos, i);
            }
        }
        let mut evicted = 0;
        while self.order.len() > max {
            let Some((_, i)) = self.order.pop_first() else {
                break;
            };
            self.drop_slot(i);
            evicted += 1;
        }
        evicted
    }

    fn remove(&mut self, token: &str) {
        let hash = self.hasher.hash_one(token);
        let slots = &self.slots;
        let found = self
            .index
            .find(hash, |&i| {
                slots[i as usize].as_ref().is_some_and(|l| l.token == token)
            })
            .copied();
        if let Some(i) = found {
            if let Some(pos) = self.slots[i as usize].as_ref().map(|l| l.pos) {
                self.order.remove(&pos);
            }
            self.drop_slot(i);
        }
    }

    /// Frees slot `i` (already out of `order`): index entry, strings, slot.
    fn drop_slot(&mut self, i: u32) {
        let Some(link) = self.slots[i as usize].take() else {
            return;
        };
        let hash = self.hasher.hash_one(link.token.as_str());
        if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        release(&mut self.strings, &link);
        self.free.push(i);
    }

    fn resolve(&self, token: &str, host: &str, at: i64) -> Option<Resolved> {
        let link = self.find(token)?;
        let domain = self.domains.get(&link.domain_id)?;
        if *domain.host != *host {
            return None;
        }
        let campaign = self.campaigns.get(&link.campaign_id)?;
        let expired = link.expires_at <= at;
        // coalesce(link.fallback_url, campaign.fallback_url, domain.fallback_url)
        let target = if expired {
            match link.fallback {
                Some(id) => Some(self.strings.get(id)?),
                None => campaign.fallback.as_ref().or(domain.fallback.as_ref()),
            }
        } else {
            Some(self.strings.get(link.destination)?)
        };
        let variant = match link.variant {
            Some(id) => Some(self.strings.get(id)?.clone()),
            None => None,
        };
        let location = target.map(|url| {
            if campaign.click_param.is_none() && !has_macro(url) {
                Location::Ready(url.to_string())
            } else {
                Location::Expand {
                    url: url.clone(),
                    click_param: campaign.click_param.clone(),
                    subscriber: link.subscriber.clone(),
                    campaign: link.campaign_id,
                    variant,
                    message: link.message_id,
                }
            }
        });
        Some(Resolved {
            link_id: link.link_id,
            message_id: link.message_id,
            location,
            expired,
        })
    }
}

fn release(strings: &mut Interner, link: &Link) {
    strings.release(link.destination);
    if let Some(id) = link.fallback {
        strings.release(id);
    }
    if let Some(id) = link.variant {
        strings.release(id);
    }
}

struct CacheMetrics {
    hits: IntCounter,
    misses: IntCounter,
    links: IntGauge,
    evictions: IntCounter,
    feed_errors: IntCounter,
    synced: Gauge,
}

impl CacheMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let hits = IntCounter::new(
            "smslink_proxy_cache_hits_total",
            "Taps answered from the link cache",
        )?;
        let misses = IntCounter::new(
            "smslink_proxy_cache_misses_total",
            "Taps whose token (on that host) the link cache did not hold",
        )?;
        let links = IntGauge::new("smslink_proxy_cache_links", "Links in the cache")?;
        let evictions = IntCounter::new(
            "smslink_proxy_cache_evictions_total",
            "Links dropped from the cache to stay within --cache-max-links",
        )?;
        let feed_errors = IntCounter::new(
            "smslink_proxy_cache_feed_errors_total",
            "Link feed rounds that failed (database unreachable, slow or refusing)",
        )?;
        let synced = Gauge::new(
            "smslink_proxy_cache_synced_timestamp_seconds",
            "Unix time the cache last caught up with the link feed (lag: time() minus this)",
        )?;
        registry.register(Box::new(hits.clone()))?;
        registry.register(Box::new(misses.clone()))?;
        registry.register(Box::new(links.clone()))?;
        registry.register(Box::new(evictions.clone()))?;
        registry.register(Box::new(feed_errors.clone()))?;
        registry.register(Box::new(synced.clone()))?;
        Ok(CacheMetrics {
            hits,
            misses,
            links,
            evictions,
            feed_errors,
            synced,
        })
    }
}

/// The warm link cache, shared as `Arc<Cache>`.
pub struct Cache {
    max_links: usize,
    state: RwLock<State>,
    warm: AtomicBool,
    metrics: CacheMetrics,
}

/// Where the feed stands.
#[derive(Debug, Default, Clone, Copy)]
struct Cursor {
    /// False until `edge_start` has answered.
    started: bool,
    /// Some(after_link) while the cold start's load by link id is under way.
    loading: Option<i64>,
    /// The incremental feed's position: (feed_xid, link_id) of the last row applied.
    after_xid: i64,
    after_link: i64,
    /// The horizon campaigns have been read up to (None: not read yet).
    campaigns_to: Option<i64>,
}

type FeedError = Box<dyn std::error::Error + Send + Sync>;

impl Cache {
    /// A cold cache holding at most `max_links` links (1 to [`MAX_LINKS`]), with its metrics
    /// registered in `registry`.
    pub fn new(max_links: usize, registry: &Registry) -> Result<Arc<Cache>, prometheus::Error> {
        if !(1..=MAX_LINKS).contains(&max_links) {
            return Err(prometheus::Error::Msg(format!(
                "the link cache holds 1 to {MAX_LINKS} links, not {max_links}"
            )));
        }
        Ok(Arc::new(Cache {
            max_links,
            state: RwLock::new(State::default()),
            warm: AtomicBool::new(false),
            metrics: CacheMetrics::new(registry)?,
        }))
    }

    /// A tap at `at_micros` (Unix µs) for `token` on `host` (the raw Host / :authority value).
    /// Counts a hit or a miss.
    pub fn lookup(&self, token: &str, host: Option<&str>, at_micros: i64) -> Lookup {
        // No host never matches a domain on the database path either (404 there).
        let found = host.and_then(|h| {
            let h = normalize_host(h);
            self.state.read().resolve(token, &h, at_micros)
        });
        match found {
            Some(r) => {
                self.metrics.hits.inc();
                Lookup::Hit(r)
            }
            None => {
                self.metrics.misses.inc();
                Lookup::Miss
            }
        }
    }

    /// The domain's fallback URL by request host, for taps on unknown tokens while the
    /// database is unreachable (None: unknown host or no fallback).
    pub fn domain_fallback(&self, host: Option<&str>) -> Option<String> {
        let host = normalize_host(host?);
        let st = self.state.read();
        let id = st.hosts.get(host.as_str())?;
        st.domains.get(id)?.outage.as_deref().map(str::to_string)
    }

    pub fn links(&self) -> usize {
        self.state.read().order.len()
    }

    /// True once the cache has caught up with the feed at least once (for readiness checks;
    /// the proxy does not need it: a cold cache only misses, and misses take the database path).
    #[allow(dead_code)]
    pub fn is_warm(&self) -> bool {
        self.warm.load(Ordering::Acquire)
    }

    /// The feed loop (spawn it): a cold start from `smslink.edge_start(max_links)` and
    /// `edge_links_by_id`, then pages of `edge_links` up to the horizon until caught up, with
    /// `edge_domains()` and `edge_campaigns(..)` first on every round (so new links find their
    /// campaign and domain); `refresh` between rounds.
    /// On a database error it logs, backs off (100 ms doubling to 5 s) and retries from where
    /// it was, keeping and serving what it has. Never returns.
    pub async fn run_feed(self: Arc<Self>, pool: Pool, refresh: Duration) {
        let mut cursor = Cursor::default();
        let mut backoff = BACKOFF_MIN;
        loop {
            match self.round(&pool, &mut cursor).await {
                Ok(()) => {
                    backoff = BACKOFF_MIN;
                    tokio::time::sleep(refresh).await;
                }
                Err(e) => {
                    self.metrics.feed_errors.inc();
                    tracing::warn!(error = %e, retry_in = ?backoff,
                        links = self.links(), "link feed failed; serving the cache as it is");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// One round of the feed: domains, campaigns, then link pages until a short page.
    ///
    /// Feed positions are transaction ids (`feed_xid`): each round reads the changes of
    /// transactions below the horizon (`edge_horizon()`, the snapshot's xmin), all of which have
    /// finished, so a transaction that commits late is never skipped. A cold start takes the
    /// horizon and the link id after which the newest `max_links` links lie
    /// (`edge_start`), loads those links by id (`edge_links_by_id`), then follows the feed
    /// from that horizon: whatever changed during the load is read again.
    async fn round(&self, pool: &Pool, cursor: &mut Cursor) -> Result<(), FeedError> {
        let client = within(pool.get()).await??;
        if !cursor.started {
            let max = i32::try_from(self.max_links).unwrap_or(i32::MAX);
            let row = within(client.query_one(
                "SELECT horizon, after_link FROM smslink.edge_start($1)",
                &[&max],
            ))
            .await??;
            let horizon: i64 = row.try_get(0)?;
            let after_link: Option<i64> = row.try_get(1)?;
            // (feed_xid, link_id) > (horizon, 0): every change from the horizon on.
            cursor.after_xid = horizon;
            cursor.after_link = 0;
            cursor.loading = Some(after_link.unwrap_or(0));
            cursor.started = true;
            tracing::info!(
                horizon,
                after_link,
                max_links = self.max_links,
                "link feed: cold start"
            );
        }
        let horizon: i64 = within(client.query_one("SELECT smslink.edge_horizon()", &[]))
            .await??
            .try_get(0)?;

        let rows = within(client.query(
            "SELECT domain_id, host, fallback_url, brand_fallback_url FROM smslink.edge_domains()",
            &[],
        ))
        .await??;
        let mut domains = HashMap::with_capacity(rows.len());
        for r in &rows {
            let (Some(id), Some(host)) = (r.try_get::<_, Option<i64>>(0)?, r.try_get(1)?) else {
                continue;
            };
            let host: String = host;
            let fallback: Option<String> = r.try_get(2)?;
            let brand: Option<String> = r.try_get(3)?;
            domains.insert(id, (host, fallback, brand));
        }
        self.set_domains(domains);

        let rows = within(client.query(
            "SELECT campaign_id, fallback_url, click_param FROM smslink.edge_campaigns($1, $2)",
            &[&cursor.campaigns_to, &horizon],
        ))
        .await??;
        let mut campaigns = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get(0)?;
            campaigns.push((id, r.try_get(1)?, r.try_get(2)?));
        }
        self.apply_campaigns(campaigns);
        cursor.campaigns_to = Some(horizon);

        if let Some(mut after) = cursor.loading {
            loop {
                let rows = within(client.query(
                    &format!("SELECT {LINK_COLUMNS} FROM smslink.edge_links_by_id($1, $2)"),
                    &[&after, &PAGE],
                ))
                .await??;
                let page = decode_page(&rows)?;
                self.apply_links(&page.rows);
                if let Some((_, link)) = page.last {
                    after = after.max(link);
                }
                cursor.loading = Some(after);
                if rows.len() < PAGE as usize {
                    break;
                }
            }
            cursor.loading = None;
        }

        loop {
            let rows = within(client.query(
                &format!("SELECT {LINK_COLUMNS} FROM smslink.edge_links($1, $2, $3, $4)"),
                &[&cursor.after_xid, &cursor.after_link, &horizon, &PAGE],
            ))
            .await??;
            let page = decode_page(&rows)?;
            self.apply_links(&page.rows);
            if let Some((xid, link)) = page.last {
                cursor.after_xid = xid;
                cursor.after_link = link;
            }
            if rows.len() < PAGE as usize {
                break;
            }
        }
        self.warm.store(true, Ordering::Release);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.metrics.synced.set(now);
        Ok(())
    }

    /// Replaces the domain list.
    fn set_domains(&self, domains: HashMap<i64, (String, Option<String>, Option<String>)>) {
        let mut hosts = HashMap::with_capacity(domains.len());
        let domains: HashMap<i64, Domain> = domains
            .into_iter()
            .map(|(id, (host, fallback, brand))| {
                hosts.insert(host.clone().into_boxed_str(), id);
                let fallback: Option<Arc<str>> = fallback.map(Arc::from);
                (
                    id,
                    Domain {
                        host: host.into_boxed_str(),
                        outage: fallback.clone().or_else(|| brand.map(Arc::from)),
                        fallback,
                    },
                )
            })
            .collect();
        let mut st = self.state.write();
        st.domains = domains;
        st.hosts = hosts;
    }

    /// Applies campaign changes: (campaign id, fallback_url, click_param).
    fn apply_campaigns(&self, rows: Vec<(i64, Option<String>, Option<String>)>) {
        for chunk in rows.chunks(CHUNK) {
            let mut st = self.state.write();
            for (id, fallback, click_param) in chunk {
                st.campaigns.insert(
                    *id,
                    Campaign {
                        fallback: fallback.as_deref().map(Arc::from),
                        click_param: click_param.as_deref().map(Arc::from),
                    },
                );
            }
        }
    }

    /// Applies link rows in feed order, a chunk per exclusive lock.
    fn apply_links(&self, rows: &[LinkRow]) {
        for chunk in rows.chunks(CHUNK) {
            let mut evicted = 0;
            let live = {
                let mut st = self.state.write();
                for row in chunk {
                    match &row.link {
                        Some(new) => evicted += st.upsert(&row.token, new, self.max_links),
                        None => st.remove(&row.token),
                    }
                }
                st.order.len()
            };
            self.metrics.evictions.inc_by(evicted);
            self.metrics
                .links
                .set(i64::try_from(live).unwrap_or(i64::MAX));
        }
    }
}

/// Bounds one feed step in time.
async fn within<F: std::future::Future>(f: F) -> Result<F::Output, FeedError> {
    tokio::time::timeout(QUERY_TIMEOUT, f)
        .await
        .map_err(|_| format!("no answer from the database within {QUERY_TIMEOUT:?}").into())
}

/// The columns of `smslink.edge_link` the cache reads, in the order [`decode_link`] expects.
const LINK_COLUMNS: &str = "feed_xid, link_id, token, deleted, domain_id, campaign_id, \
     message_id, destination, fallback_url, expires_at, subscriber_key, variant_key";

struct Page {
    rows: Vec<LinkRow>,
    /// (feed_xid, link_id) of the last row: where the next page starts.
    last: Option<(i64, i64)>,
}

fn decode_page(rows: &[tokio_postgres::Row]) -> Result<Page, FeedError> {
    let mut page = Page {
        rows: Vec::with_capacity(rows.len()),
        last: None,
    };
    let mut unusable = 0usize;
    for r in rows {
        let (key, row, usable) = decode_link(r)?;
        unusable += usize::from(!usable);
        page.last = Some(key);
        page.rows.push(row);
    }
    if unusable > 0 {
        tracing::warn!(
            unusable,
            "link feed: rows without token, domain, campaign, message or destination; \
             left to the database path"
        );
    }
    Ok(page)
}

/// One feed row: its feed key (feed_xid, link_id), the change, and false when a live row
/// lacked what the cache needs (it is then dropped from the cache, as a tombstone would be).
fn decode_link(r: &tokio_postgres::Row) -> Result<((i64, i64), LinkRow, bool), FeedError> {
    let xid: i64 = r.try_get(0)?;
    let link_id: i64 = r.try_get(1)?;
    let token: Option<String> = r.try_get(2)?;
    let deleted: Option<bool> = r.try_get(3)?;
    let key = (xid, link_id);
    let gone = |token: Option<String>| LinkRow {
        token: token.unwrap_or_default(),
        link: None,
    };
    if deleted.unwrap_or(false) {
        return Ok((key, gone(token), true));
    }
    let fields = (
        r.try_get::<_, Option<i64>>(4)?,
        r.try_get::<_, Option<i64>>(5)?,
        r.try_get::<_, Option<i64>>(6)?,
        r.try_get::<_, Option<String>>(7)?,
    );
    let (Some(domain_id), Some(campaign_id), Some(message_id), Some(destination)) = fields else {
        return Ok((key, gone(token), false));
    };
    let Some(token) = token else {
        return Ok((key, gone(None), false));
    };
    let link = NewLink {
        link_id,
        domain_id,
        campaign_id,
        message_id,
        destination,
        fallback: r.try_get(8)?,
        expires_at: r
            .try_get::<_, Option<UnixMicros>>(9)?
            .map_or(NEVER, |t| t.0),
        subscriber: r.try_get(10)?,
        variant: r.try_get(11)?,
    };
    Ok((
        key,
        LinkRow {
            token,
            link: Some(link),
        },
        true,
    ))
}

/// A `timestamptz` as Unix microseconds, decoded from the binary wire format (µs since
/// 2000-01-01 UTC) without going through `SystemTime`, so `±infinity` cannot overflow:
/// `infinity` never expires, `-infinity` has always expired.
struct UnixMicros(i64);

impl<'a> FromSql<'a> for UnixMicros {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw
            .try_into()
            .map_err(|_| format!("a timestamptz has 8 bytes, not {}", raw.len()))?;
        Ok(UnixMicros(match i64::from_be_bytes(bytes) {
            i64::MAX => i64::MAX,
            i64::MIN => i64::MIN,
            t => t.saturating_add(PG_EPOCH_UNIX_MICROS),
        }))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "go.test.example";
    const T0: i64 = 1_700_000_000_000_000;

    fn cache(max: usize) -> (Arc<Cache>, Registry) {
        let registry = Registry::new();
        let c = Cache::new(max, &registry).expect("cache");
        let mut domains = HashMap::new();
        domains.insert(
            1,
            (
                HOST.to_string(),
                Some("https://brand.test/home".to_string()),
                None,
            ),
        );
        domains.insert(
            2,
            (
                "bare.test.example".to_string(),
                None,
                Some("https://brand.test/outage".to_string()),
            ),
        );
        c.set_domains(domains);
        c.apply_campaigns(vec![
            (10, None, None),
            (11, Some("https://brand.test/ended".into()), None),
            (12, None, Some("smsclid={click_id}&c={campaign}".into())),
        ]);
        (c, registry)
    }

    fn link(id: i64, campaign: i64, destination: &str) -> NewLink {
        NewLink {
            link_id: id,
            domain_id: 1,
            campaign_id: campaign,
            message_id: id * 10,
            destination: destination.to_string(),
            fallback: None,
            expires_at: NEVER,
            subscriber: Some(format!("sub-{id}")),
            variant: Some("A".to_string()),
        }
    }

    fn row(token: &str, l: NewLink) -> LinkRow {
        LinkRow {
            token: token.to_string(),
            link: Some(l),
        }
    }

    fn tombstone(token: &str) -> LinkRow {
        LinkRow {
            token: token.to_string(),
            link: None,
        }
    }

    fn hit(c: &Cache, token: &str, host: &str, at: i64) -> Resolved {
        match c.lookup(token, Some(host), at) {
            Lookup::Hit(r) => r,
            Lookup::Miss => panic!("{token} on {host}: miss"),
        }
    }

    fn url(c: &Cache, token: &str, at: i64) -> Option<String> {
        hit(c, token, HOST, at).location.map(|l| l.url(4242))
    }

    fn metric(r: &Registry, name: &str) -> f64 {
        r.gather()
            .iter()
            .find(|f| f.name() == name)
            .and_then(|f| {
                let m = f.get_metric().first()?;
                Some(match f.get_field_type() {
                    prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                    _ => m.get_gauge().get_value(),
                })
            })
            .unwrap_or(f64::NAN)
    }

    #[test]
    fn live_link_goes_to_its_destination() {
        let (c, _) = cache(10);
        c.apply_links(&[row("tok000001", link(1, 10, "https://shop.test/a"))]);
        let r = hit(&c, "tok000001", HOST, T0);
        assert_eq!(r.link_id, 1);
        assert!(!r.expired);
        assert_eq!(
            r.location,
            Some(Location::Ready("https://shop.test/a".into()))
        );
        assert!(!r.location.as_ref().is_some_and(Location::needs_click_id));
    }

    #[test]
    fn expired_links_follow_the_fallback_chain() {
        let (c, _) = cache(10);
        let expiring = |id, campaign, fallback: Option<&str>| NewLink {
            expires_at: T0,
            fallback: fallback.map(str::to_string),
            ..link(id, campaign, "https://shop.test/live")
        };
        c.apply_links(&[
            row("own", expiring(1, 11, Some("https://shop.test/own"))),
            row("campaign", expiring(2, 11, None)),
            row("domain", expiring(3, 10, None)),
            row(
                "nothing",
                NewLink {
                    domain_id: 2,
                    ..expiring(4, 10, None)
                },
            ),
        ]);
        // expires_at <= at is expired: one µs before, the destination; at the instant, not.
        assert_eq!(
            url(&c, "own", T0 - 1).as_deref(),
            Some("https://shop.test/live")
        );
        assert!(!hit(&c, "own", HOST, T0 - 1).expired);
        assert!(hit(&c, "own", HOST, T0).expired);
        assert_eq!(url(&c, "own", T0).as_deref(), Some("https://shop.test/own"));
        assert_eq!(
            url(&c, "campaign", T0).as_deref(),
            Some("https://brand.test/ended")
        );
        assert_eq!(
            url(&c, "domain", T0 + 1).as_deref(),
            Some("https://brand.test/home")
        );
        let gone = hit(&c, "nothing", "bare.test.example", T0);
        assert_eq!(gone.location, None, "expired, no fallback: 410");
        assert_eq!(gone.link_id, 4);
    }

    #[test]
    fn click_param_and_macros_are_expanded_per_click() {
        let (c, _) = cache(10);
        c.apply_links(&[
            row("param", link(7, 12, "https://shop.test/p?x=1#top")),
            row("macros",
                NewLink {
                    subscriber: Some("ann+1@example.com".into()),
                    variant: Some("B 2".into()),
                    ..link(8, 10, "https://shop.test/l?s=%7Bsubscriber%7D&v={variant}&m={message}&k={campaign}&c={click_id}")
                },
            ),
            row("nulls",
                NewLink {
                    subscriber: None,
                    variant: None,
                    ..link(9, 10, "https://shop.test/l?s={subscriber}&v={variant}")
                },
            ),
        ]);
        let loc = hit(&c, "param", HOST, T0).location.expect("location");
        assert!(loc.needs_click_id());
        assert_eq!(loc.url(981), "https://shop.test/p?x=1&smsclid=981&c=12#top");
        assert_eq!(
            url(&c, "macros", T0).as_deref(),
            Some("https://shop.test/l?s=ann%2B1%40example.com&v=B%202&m=80&k=10&c=4242")
        );
        // NULL subscriber key and variant expand to "", as expand_destination does.
        assert_eq!(
            url(&c, "nulls", T0).as_deref(),
            Some("https://shop.test/l?s=&v=")
        );
    }

    #[test]
    fn host_must_be_the_links_domain_after_normalisation() {
        let (c, r) = cache(10);
        c.apply_links(&[row("tok", link(1, 10, "https://shop.test/a"))]);
        for h in [
            "go.test.example",
            "GO.Test.Example",
            "go.test.example:8443",
            "go.test.example.",
            "Go.Test.Example.:80",
        ] {
            hit(&c, "tok", h, T0);
        }
        assert_eq!(c.lookup("tok", Some("bare.test.example"), T0), Lookup::Miss);
        assert_eq!(c.lookup("tok", Some("evil.example"), T0), Lookup::Miss);
        assert_eq!(c.lookup("tok", None, T0), Lookup::Miss);
        assert_eq!(c.lookup("other", Some(HOST), T0), Lookup::Miss);
        assert_eq!(metric(&r, "smslink_proxy_cache_hits_total"), 5.0);
        assert_eq!(metric(&r, "smslink_proxy_cache_misses_total"), 4.0);
        assert_eq!(metric(&r, "smslink_proxy_cache_links"), 1.0);
    }

    #[test]
    fn unknown_campaign_or_domain_is_a_miss() {
        let (c, _) = cache(10);
        c.apply_links(&[
            row("nocampaign", link(1, 99, "https://shop.test/a")),
            row(
                "nodomain",
                NewLink {
                    domain_id: 99,
                    ..link(2, 10, "https://shop.test/a")
                },
            ),
        ]);
        assert_eq!(c.lookup("nocampaign", Some(HOST), T0), Lookup::Miss);
        assert_eq!(c.lookup("nodomain", Some(HOST), T0), Lookup::Miss);
        c.apply_campaigns(vec![(99, None, None)]);
        hit(&c, "nocampaign", HOST, T0);
    }

    #[test]
    fn tombstones_and_updates() {
        let (c, _) = cache(10);
        c.apply_links(&[
            row("a", link(1, 10, "https://shop.test/old")),
            row("b", link(2, 10, "https://shop.test/old")),
        ]);
        assert_eq!(c.state.read().strings.len(), 2, "destination and variant");
        c.apply_links(&[row("a", link(1, 10, "https://shop.test/new"))]);
        assert_eq!(url(&c, "a", T0).as_deref(), Some("https://shop.test/new"));
        assert_eq!(url(&c, "b", T0).as_deref(), Some("https://shop.test/old"));
        assert_eq!(c.links(), 2);
        // The same string in both versions survives the replacement.
        c.apply_links(&[row(
            "a",
            NewLink {
                expires_at: T0,
                ..link(1, 10, "https://shop.test/new")
            },
        )]);
        assert_eq!(
            url(&c, "a", T0 - 1).as_deref(),
            Some("https://shop.test/new")
        );
        assert_eq!(url(&c, "a", T0).as_deref(), Some("https://brand.test/home"));
        c.apply_links(&[tombstone("b"), tombstone("never-cached")]);
        assert_eq!(c.lookup("b", Some(HOST), T0), Lookup::Miss);
        assert_eq!(c.links(), 1);
        // "old" had only b left: the interner dropped it.
        assert_eq!(c.state.read().strings.len(), 2, "new and A");
        c.apply_links(&[tombstone("a")]);
        assert_eq!(c.links(), 0);
        assert_eq!(c.state.read().strings.len(), 0);
        // Freed slots are reused.
        c.apply_links(&[row("c", link(3, 10, "https://shop.test/c"))]);
        assert_eq!(c.state.read().slots.len(), 2);
        assert_eq!(url(&c, "c", T0).as_deref(), Some("https://shop.test/c"));
    }

    #[test]
    fn eviction_drops_the_lowest_positions_first() {
        let (c, r) = cache(3);
        let rows: Vec<LinkRow> = (1..=5)
            .map(|i| row(&format!("t{i}"), link(i, 10, "https://shop.test/x")))
            .collect();
        c.apply_links(&rows[..3]);
        // t1 is changed: it moves to the newest position, so t2 goes first.
        c.apply_links(&[row("t1", link(1, 10, "https://shop.test/y"))]);
        c.apply_links(&rows[3..]);
        assert_eq!(c.links(), 3);
        for (t, cached) in [
            ("t1", true),
            ("t2", false),
            ("t3", false),
            ("t4", true),
            ("t5", true),
        ] {
            assert_eq!(
                matches!(c.lookup(t, Some(HOST), T0), Lookup::Hit(_)),
                cached,
                "{t}"
            );
        }
        assert_eq!(metric(&r, "smslink_proxy_cache_evictions_total"), 2.0);
        assert_eq!(metric(&r, "smslink_proxy_cache_links"), 3.0);
        let st = c.state.read();
        assert!(st.slots.len() <= 4, "slots bounded: {}", st.slots.len());
        assert_eq!(st.index.len(), 3);
    }

    #[test]
    fn campaign_changes_reach_cached_links() {
        let (c, _) = cache(10);
        c.apply_links(&[
            row(
                "a",
                NewLink {
                    expires_at: T0,
                    ..link(1, 10, "https://shop.test/a")
                },
            ),
            row("b", link(2, 10, "https://shop.test/b")),
        ]);
        assert_eq!(url(&c, "a", T0).as_deref(), Some("https://brand.test/home"));
        assert_eq!(url(&c, "b", T0).as_deref(), Some("https://shop.test/b"));
        c.apply_campaigns(vec![(
            10,
            Some("https://brand.test/over".into()),
            Some("smsclid={click_id}".into()),
        )]);
        assert_eq!(
            url(&c, "a", T0).as_deref(),
            Some("https://brand.test/over?smsclid=4242")
        );
        assert_eq!(
            url(&c, "b", T0).as_deref(),
            Some("https://shop.test/b?smsclid=4242")
        );
        // Domain changes, likewise: the fallback and the host.
        let mut d = HashMap::new();
        d.insert(1, ("new.test.example".to_string(), None, None));
        c.set_domains(d);
        assert_eq!(c.lookup("b", Some(HOST), T0), Lookup::Miss);
        hit(&c, "b", "new.test.example", T0);
    }

    #[test]
    fn domain_fallback_by_host() {
        let (c, _) = cache(10);
        assert_eq!(
            c.domain_fallback(Some("GO.test.example:443")).as_deref(),
            Some("https://brand.test/home")
        );
        // No fallback of its own: the brand's serves outages, never the expiry chain.
        assert_eq!(
            c.domain_fallback(Some("bare.test.example")).as_deref(),
            Some("https://brand.test/outage")
        );
        assert_eq!(c.domain_fallback(Some("unknown.example")), None);
        assert_eq!(c.domain_fallback(None), None);
    }

    #[test]
    fn bad_bounds_and_timestamps() {
        assert!(Cache::new(0, &Registry::new()).is_err());
        assert!(Cache::new(MAX_LINKS + 1, &Registry::new()).is_err());
        let ts = |v: i64| UnixMicros::from_sql(&Type::TIMESTAMPTZ, &v.to_be_bytes()).map(|t| t.0);
        assert_eq!(ts(0).ok(), Some(PG_EPOCH_UNIX_MICROS));
        assert_eq!(ts(i64::MAX).ok(), Some(i64::MAX));
        assert_eq!(ts(i64::MIN).ok(), Some(i64::MIN));
        assert!(UnixMicros::from_sql(&Type::TIMESTAMPTZ, &[0; 4]).is_err());
    }

    #[test]
    fn link_slot_stays_small() {
        // The per-link cost is dominated by this slot; a field added carelessly shows here.
        assert!(
            std::mem::size_of::<Option<Link>>() <= 112,
            "{}",
            std::mem::size_of::<Option<Link>>()
        );
    }

    /// Readers keep answering while a writer applies many chunks; every answer is either the
    /// old or the new destination, never a miss (the token is cached throughout).
    #[test]
    fn lookups_run_while_the_feed_writes() {
        let (c, _) = cache(100_000);
        c.apply_links(&[row("hot", link(0, 10, "https://shop.test/v0"))]);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut n = 0;
                while n < 20_000 {
                    match c.lookup("hot", Some(HOST), T0) {
                        Lookup::Hit(r) => assert!(r.location.is_some()),
                        Lookup::Miss => panic!("hot token missed"),
                    }
                    n += 1;
                }
            });
            for round in 1..=20i64 {
                let rows: Vec<LinkRow> = (0..1000)
                    .map(|i| {
                        let pos = round * 10_000 + i;
                        if i == 0 {
                            row("hot", link(0, 10, &format!("https://shop.test/v{round}")))
                        } else {
                            row(&format!("k{pos}"), link(pos, 10, "https://shop.test/x"))
                        }
                    })
                    .collect();
                c.apply_links(&rows);
            }
            reader.join().expect("reader");
        });
        assert_eq!(url(&c, "hot", T0).as_deref(), Some("https://shop.test/v20"));
    }

    /// With the database unreachable the loop keeps failing, backing off, and the cache keeps
    /// answering from what it holds. (The 10 s cap guards against a hung test only.)
    #[tokio::test]
    async fn feed_errors_keep_the_cache() {
        let (c, r) = cache(10);
        c.apply_links(&[row("kept", link(1, 10, "https://shop.test/kept"))]);
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let config: tokio_postgres::Config = "host=127.0.0.1 port=1 user=nobody connect_timeout=1"
            .parse()
            .expect("config");
        let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
        let pool = Pool::builder(manager)
            .max_size(1)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .expect("pool");
        let task = tokio::spawn(c.clone().run_feed(pool, Duration::from_millis(10)));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while metric(&r, "smslink_proxy_cache_feed_errors_total") < 2.0
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!task.is_finished(), "the feed loop ended");
        task.abort();
        assert!(metric(&r, "smslink_proxy_cache_feed_errors_total") >= 2.0);
        assert!(!c.is_warm());
        assert_eq!(
            url(&c, "kept", T0).as_deref(),
            Some("https://shop.test/kept")
        );
    }

    fn rss_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("resident pages");
        pages * 4096
    }

    /// Memory per link, on 1,000,000 synthetic links shaped like production (9-character
    /// tokens, 13-character subscriber keys, 200 campaigns of 2 variants, a destination per
    /// campaign and variant). Run alone, in release:
    /// `cargo test -p smslink-proxy --release -- --ignored --nocapture bytes_per_link`
    #[test]
    #[ignore = "measures RSS on 1M links; run alone"]
    fn bytes_per_link() {
        const N: i64 = 1_000_000;
        let (c, _) = cache(N as usize);
        c.apply_campaigns((0..200).map(|i| (1000 + i, None, None)).collect());
        let before = rss_bytes();
        let mut rows = Vec::with_capacity(10_000);
        for i in 0..N {
            let campaign = 1000 + i % 200;
            let variant = if i % 2 == 0 { "A" } else { "B" };
            rows.push(row(
                &format!("{:09x}", i * 7919),
                NewLink {
                    link_id: i,
                    domain_id: 1,
                    campaign_id: campaign,
                    message_id: i,
                    destination: format!("https://shop.example.com/offer/{campaign}?v={variant}"),
                    fallback: None,
                    expires_at: T0 + i,
                    subscriber: Some(format!("+44791{i:08}")),
                    variant: Some(variant.to_string()),
                },
            ));
            if rows.len() == 10_000 {
                c.apply_links(&rows);
                rows.clear();
            }
        }
        c.apply_links(&rows);
        drop(rows);
        let after = rss_bytes();
        assert_eq!(c.links(), N as usize);
        let per_link = (after.saturating_sub(before)) as f64 / N as f64;
        println!(
            "RSS {} MB -> {} MB: {per_link:.0} bytes per link",
            before >> 20,
            after >> 20
        );
        assert!(per_link < 300.0, "{per_link} bytes per link");
        // The lookup cost, for the notes (printed, not asserted).
        let started = std::time::Instant::now();
        let mut hits = 0usize;
        for i in (0..N).step_by(3) {
            let token = format!("{:09x}", i * 7919);
            hits += usize::from(matches!(c.lookup(&token, Some(HOST), T0), Lookup::Hit(_)));
        }
        let n = ((N + 2) / 3) as usize;
        assert_eq!(hits, n);
        println!(
            "{n} lookups (token formatting included): {:.0} ns each",
            started.elapsed().as_nanos() as f64 / n as f64
        );
    }

    /// The feed against a real database, and the cache's answers against the database path's.
    /// Needs `SMSLINK_TEST_DATABASE_URL` (a superuser, a database with the extension).
    #[tokio::test]
    async fn feed_matches_the_database_path() {
        let Ok(url) = std::env::var("SMSLINK_TEST_DATABASE_URL") else {
            eprintln!(
                "SKIPPED feed_matches_the_database_path: set SMSLINK_TEST_DATABASE_URL to a \
                 superuser connection string of a database with the smslink extension"
            );
            return;
        };
        db::feed_matches_the_database_path(&url).await;
    }

    mod db {
        use super::super::*;
        use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};

        fn now_micros() -> i64 {
            let d = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock after 1970");
            i64::try_from(d.as_micros()).expect("µs fit")
        }

        fn micros_to_time(us: i64) -> SystemTime {
            UNIX_EPOCH + Duration::from_micros(u64::try_from(us).expect("after 1970"))
        }

        fn pool(config: tokio_postgres::Config) -> Pool {
            let manager = Manager::from_config(
                config,
                tokio_postgres::NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(2)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .expect("pool")
        }

        /// The cache's answer for every link must be the database path's, for the same tap
        /// time and click id.
        async fn compare(
            db: &tokio_postgres::Client,
            cache: &Cache,
            links: &[(i64, String, String)],
        ) {
            for (link_id, token, host) in links {
                let at = now_micros();
                let answer = db
                    .query_one(
                        "SELECT status, location, click_id FROM smslink.track_click(
                             $1, $2, 'GET', 'Mozilla/5.0 (iPhone)', '127.0.0.1'::inet,
                             NULL, '{}'::jsonb, $3)",
                        &[token, host, &micros_to_time(at)],
                    )
                    .await
                    .expect("track_click");
                let status: i32 = answer.get(0);
                let location: Option<String> = answer.get(1);
                let click_id: Option<i64> = answer.get(2);
                let Lookup::Hit(mine) = cache.lookup(token, Some(host), at) else {
                    panic!("link {link_id} ({token} on {host}): miss, database says {status}");
                };
                assert_eq!(mine.link_id, *link_id);
                let mine_url = mine
                    .location
                    .map(|l| l.url(click_id.expect("a logged click has an id")));
                assert_eq!(
                    mine_url, location,
                    "link {link_id} (database status {status})"
                );
                assert_eq!(status == 410, mine_url.is_none(), "link {link_id}");
                // Another host: the database says 404, the cache misses.
                assert_eq!(cache.lookup(token, Some("other.example"), at), Lookup::Miss);
            }
        }

        pub async fn feed_matches_the_database_path(url: &str) {
            let config: tokio_postgres::Config = url.parse().expect("connection string");
            let admin = pool(config.clone());
            let db = admin.get().await.expect("database connection");
            let have: i64 = db
                .query_one(
                    "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                      WHERE n.nspname = 'smslink' AND p.proname IN ('edge_links', 'edge_start',
                            'edge_domains', 'edge_campaigns', 'edge_horizon', 'edge_links_by_id')",
                    &[],
                )
                .await
                .expect("catalog")
                .get(0);
            assert_eq!(
                have, 6,
                "the smslink.edge_* feed functions are not installed"
            );

            // Own brand and hosts, so other data in the database does not matter; the feed
            // runs as a login role that is only smslink_proxy, as the proxy does.
            let tag = format!("{}x{}", std::process::id(), now_micros() % 1_000_000_000);
            let host = format!("c{tag}.cache.example");
            let bare = format!("b{tag}.cache.example");
            let role = format!("cache_feed_{tag}");
            let setup = format!(
                "CREATE ROLE {role} LOGIN IN ROLE smslink_proxy;
                 DO $$
                 DECLARE b bigint; d bigint; d2 bigint; c1 bigint; c2 bigint; c3 bigint; c4 bigint;
                 BEGIN
                   b := smslink.create_brand('cache-{tag}');
                   d := smslink.add_domain(b, '{host}');
                   d2 := smslink.add_domain(b, '{bare}');
                   UPDATE smslink.domain SET fallback_url = 'https://brand.example/home' WHERE id = d;
                   c1 := smslink.create_campaign(b, 'plain-{tag}', '{{A,B}}');
                   c2 := smslink.create_campaign(b, 'param-{tag}');
                   c3 := smslink.create_campaign(b, 'bare-{tag}');
                   c4 := smslink.create_campaign(b, 'doomed{tag}');
                   UPDATE smslink.campaign SET click_param = 'smsclid={{click_id}}&k={{campaign}}',
                          fallback_url = 'https://brand.example/ended' WHERE id = c2;
                   PERFORM smslink.prepare_messages(c1, 'A', '{{p1,p2}}', 'Hi https://shop.example/plain?x=1');
                   PERFORM smslink.prepare_message(c1, 'B', 'ann+1@example.com',
                           'Hi https://shop.example/m?s={{subscriber}}&v={{variant}}&m={{message}}&c={{click_id}}');
                   PERFORM smslink.prepare_messages(c2, 'A', '{{q1,q2}}', 'Shop https://shop.example/land?a=1#top');
                   PERFORM smslink.prepare_message(c3, 'A', 'r1', 'Hi https://shop.example/bare');
                   PERFORM smslink.prepare_message(c4, 'A', 'z1', 'Hi https://shop.example/doomed');
                   -- The bare domain (no fallback) for c3 only; the other one for the rest.
                   UPDATE smslink.link l SET domain_id = CASE WHEN m.campaign_id = c3 THEN d2 ELSE d END
                     FROM smslink.message m
                    WHERE m.id = l.message_id AND m.campaign_id IN (c1, c2, c3, c4);
                 END $$"
            );
            db.batch_execute(&setup).await.expect("setup");
            let rows = db
                .query(
                    "SELECT l.id, l.token, d.host, c.name LIKE 'doomed%'
                       FROM smslink.link l JOIN smslink.message m ON m.id = l.message_id
                       JOIN smslink.campaign c ON c.id = m.campaign_id
                       JOIN smslink.domain d ON d.id = l.domain_id
                      WHERE c.brand_id = (SELECT id FROM smslink.brand WHERE name = 'cache-' || $1)
                      ORDER BY l.id",
                    &[&tag],
                )
                .await
                .expect("links");
            let doomed: Vec<(i64, String, String)> = rows
                .iter()
                .filter(|r| r.get(3))
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            let links: Vec<(i64, String, String)> = rows
                .iter()
                .filter(|r| !r.get::<_, bool>(3))
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            assert_eq!((links.len(), doomed.len()), (6, 1));
            let ids: Vec<i64> = links.iter().map(|l| l.0).collect();
            // Expired: p2 (domain fallback), ann (own fallback, with a macro), q2 (campaign
            // fallback, with the click parameter), r1 (no fallback anywhere: 410).
            db.execute(
                "UPDATE smslink.link SET expires_at = now() - interval '1 hour' WHERE id = ANY($1)",
                &[&vec![ids[1], ids[4], ids[5]]],
            )
            .await
            .expect("expire");
            db.execute(
                "UPDATE smslink.link SET expires_at = now() - interval '1 hour',
                        fallback_url = 'https://shop.example/own?c={click_id}' WHERE id = $1",
                &[&ids[2]],
            )
            .await
            .expect("expire with fallback");

            let feed = pool(config.clone().user(&role).to_owned());
            let registry = Registry::new();
            let cache = Cache::new(1_000_000, &registry).expect("cache");
            let mut cursor = Cursor::default();
            cache.round(&feed, &mut cursor).await.expect("feed round");
            assert!(cache.is_warm());
            compare(&db, &cache, &links).await;
            assert_eq!(
                cache.domain_fallback(Some(&host.to_uppercase())).as_deref(),
                Some("https://brand.example/home")
            );

            // Changes reach the cache in the next round: a destination, a campaign. One of
            // them made by a transaction still open during a round: the round must not move
            // past it, and the next one must bring both.
            let late_pool = pool(config.clone());
            let late = late_pool.get().await.expect("second connection");
            late.batch_execute(&format!(
                "BEGIN; UPDATE smslink.link SET destination = 'https://shop.example/late'
                  WHERE id = {}",
                ids[3]
            ))
            .await
            .expect("open transaction");
            db.execute(
                "UPDATE smslink.link SET destination = 'https://shop.example/changed?s={subscriber}'
                  WHERE id = $1",
                &[&ids[0]],
            )
            .await
            .expect("edit destination");
            db.execute(
                "UPDATE smslink.campaign SET click_param = 'cid={click_id}' WHERE name = $1",
                &[&format!("plain-{tag}")],
            )
            .await
            .expect("edit campaign");
            cache.round(&feed, &mut cursor).await.expect("second round");
            late.batch_execute("COMMIT").await.expect("commit");
            cache.round(&feed, &mut cursor).await.expect("third round");
            compare(&db, &cache, &links).await;
            let (_, token, link_host) = &links[0];
            let Lookup::Hit(r) = cache.lookup(token, Some(link_host), now_micros()) else {
                panic!("miss after edit");
            };
            assert_eq!(
                r.location.map(|l| l.url(5)).as_deref(),
                Some("https://shop.example/changed?s=p1&cid=5")
            );
            let (_, token, link_host) = &links[3];
            let Lookup::Hit(r) = cache.lookup(token, Some(link_host), now_micros()) else {
                panic!("miss after the late edit");
            };
            assert_eq!(
                r.location.map(|l| l.url(5)).as_deref(),
                Some(
                    "https://shop.example/late?smsclid=5&k=".to_string()
                        + &{
                            let c: i64 = db
                                .query_one(
                                    "SELECT id FROM smslink.campaign WHERE name = $1",
                                    &[&format!("param-{tag}")],
                                )
                                .await
                                .expect("campaign id")
                                .get(0);
                            c.to_string()
                        }
                )
                .as_deref()
            );

            // A deleted link leaves a tombstone; the cache forgets it.
            let (doomed_id, doomed_token, doomed_host) = &doomed[0];
            assert!(matches!(
                cache.lookup(doomed_token, Some(doomed_host), now_micros()),
                Lookup::Hit(_)
            ));
            db.execute("DELETE FROM smslink.link WHERE id = $1", &[doomed_id])
                .await
                .expect("delete a link");
            cache.round(&feed, &mut cursor).await.expect("fourth round");
            assert_eq!(
                cache.lookup(doomed_token, Some(doomed_host), now_micros()),
                Lookup::Miss,
                "tombstone"
            );

            // A cold start on a small cache takes only the newest links.
            let small = Cache::new(2, &Registry::new()).expect("cache");
            let mut c2 = Cursor::default();
            small.round(&feed, &mut c2).await.expect("small round");
            assert_eq!(small.links(), 2);
            let newest = &links[5];
            assert!(matches!(
                small.lookup(&newest.1, Some(&newest.2), now_micros()),
                Lookup::Hit(_)
            ));
            // The loop itself: warm within the bound, and a link created afterwards reaches the
            // cache on a later round. (10 s caps against a hung loop, not timing assertions.)
            let looped = Cache::new(1000, &Registry::new()).expect("cache");
            let task = tokio::spawn(
                looped
                    .clone()
                    .run_feed(feed.clone(), Duration::from_millis(50)),
            );
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !looped.is_warm() && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                looped.is_warm(),
                "the feed loop did not catch up within 10 s"
            );
            let message: i64 = db
                .query_one(
                    "SELECT message_id FROM smslink.prepare_message(
                         (SELECT id FROM smslink.campaign WHERE name = $1), 'A', 'late-1',
                         'New https://shop.example/new')",
                    &[&format!("plain-{tag}")],
                )
                .await
                .expect("new message")
                .get(0);
            let r = db
                .query_one(
                    "UPDATE smslink.link
                        SET domain_id = (SELECT id FROM smslink.domain WHERE host = $1)
                      WHERE message_id = $2 RETURNING id, token",
                    &[&host, &message],
                )
                .await
                .expect("new link");
            let (new_id, new_token): (i64, String) = (r.get(0), r.get(1));
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let mut seen = Lookup::Miss;
            while seen == Lookup::Miss && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                seen = looped.lookup(&new_token, Some(&host), now_micros());
            }
            task.abort();
            let Lookup::Hit(r) = seen else {
                panic!("a new link did not reach the cache within 10 s");
            };
            assert_eq!(r.link_id, new_id);
            assert_eq!(
                r.location.map(|l| l.url(1)).as_deref(),
                Some("https://shop.example/new?cid=1")
            );

            db.batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
                .await
                .expect("drop role");
        }
    }
}
