//! The edge path (enabled by `--spool-dir`): a tap whose link is in the warm cache is answered
//! from the cache and made durable in the local spool before the redirect is sent; the database
//! sees it moments later through the shipper. A tap the cache cannot answer goes the database
//! path; if the database cannot answer in time, the tap is redirected to its domain's fallback
//! URL and spooled too, so it is attributed once the database is back. Only a host with no
//! fallback gets 503.
//!
//! Every tap gets a request id (a UUID) that travels with it on either path, so a tap that was
//! tried on the database path and then spooled is still logged once.

use crate::cache::{Cache, Lookup};
use crate::ship::{ClickIds, ShipMetrics};
use crate::spool::{now_micros, Record, Spool};
use deadpool_postgres::Pool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The edge path's parts, shared by every request.
pub struct Edge {
    pub cache: Arc<Cache>,
    pub spool: Spool,
    pub ids: Arc<ClickIds>,
    pending: prometheus::IntGauge,
    oldest: prometheus::Gauge,
}

/// How a tap was answered at the edge.
pub enum Answer {
    /// Redirect (or 410 when `None`): the click is on disk.
    Spooled(Option<String>),
    /// The cache cannot answer: use the database path.
    Miss,
}

/// The edge's settings.
pub struct Config {
    pub spool_dir: std::path::PathBuf,
    pub max_links: usize,
    pub refresh: Duration,
    pub ship_batch: usize,
    /// Connections the shipper commits on at once.
    pub ship_connections: usize,
}

impl Edge {
    /// Opens the spool and the click-id lease and starts the feed, lease and shipper tasks on
    /// their own small pool (never the clicks' or the postbacks').
    pub fn start(
        config: &Config,
        pool: Pool,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Edge>, String> {
        let cache = Cache::new(config.max_links, registry).map_err(|e| e.to_string())?;
        let spool = Spool::open(&config.spool_dir)?;
        let ids = ClickIds::open(&config.spool_dir)?;
        let pending = prometheus::IntGauge::new(
            "smslink_proxy_spool_pending",
            "Clicks spooled (acknowledged) and not yet committed to the database",
        )
        .map_err(|e| e.to_string())?;
        let oldest = prometheus::Gauge::new(
            "smslink_proxy_spool_oldest_seconds",
            "Age of the oldest spooled click not yet committed (0 when none)",
        )
        .map_err(|e| e.to_string())?;
        registry
            .register(Box::new(pending.clone()))
            .map_err(|e| e.to_string())?;
        registry
            .register(Box::new(oldest.clone()))
            .map_err(|e| e.to_string())?;
        let ship_metrics = ShipMetrics::new(registry).map_err(|e| e.to_string())?;
        if !spool.recovered.is_empty() {
            tracing::info!(
                segments = spool.recovered.len(),
                clicks = spool.counters.pending.load(Ordering::Relaxed),
                "shipping clicks spooled before the restart"
            );
        }
        tokio::spawn(cache.clone().run_feed(pool.clone(), config.refresh));
        tokio::spawn(ids.clone().keep_leased(pool.clone()));
        tokio::spawn(crate::ship::run(
            spool.clone(),
            pool,
            config.ship_batch,
            config.ship_connections,
            ship_metrics,
        ));
        Ok(Arc::new(Edge {
            cache,
            spool,
            ids,
            pending,
            oldest,
        }))
    }

    /// Refreshes the spool gauges (called by /metrics).
    pub fn update_gauges(&self) {
        let c = &self.spool.counters;
        self.pending.set(c.pending.load(Ordering::Relaxed).max(0));
        let at = c.oldest_at.load(Ordering::Relaxed);
        let age = if at > 0 {
            (now_micros() - at).max(0) as f64 / 1e6
        } else {
            0.0
        };
        self.oldest.set(age);
    }

    /// Answers a tap from the cache, durably, or says it cannot (the record then carries no
    /// click id: the database path assigns its own).
    pub async fn tap(&self, record: &mut Record, deadline: Duration) -> Answer {
        let answer = self.try_tap(record, deadline).await;
        if matches!(answer, Answer::Miss) {
            record.click_id = None;
            record.link_id = None;
            record.message_id = None;
        }
        answer
    }

    async fn try_tap(&self, record: &mut Record, deadline: Duration) -> Answer {
        let Lookup::Hit(hit) = self
            .cache
            .lookup(&record.token, record.host.as_deref(), record.at)
        else {
            return Answer::Miss;
        };
        record.click_id = self.ids.next();
        record.link_id = Some(hit.link_id);
        record.message_id = Some(hit.message_id);
        let location = match (&hit.location, record.click_id) {
            (None, _) => None,
            (Some(l), Some(id)) => Some(l.url(id)),
            (Some(l), None) if !l.needs_click_id() => Some(l.url(0)),
            // The landing page needs a click id and no leased id is left: the database
            // assigns one.
            (Some(_), None) => return Answer::Miss,
        };
        match tokio::time::timeout(deadline, self.spool.append(record)).await {
            Ok(Ok(())) => Answer::Spooled(location),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "spool append failed; using the database path");
                Answer::Miss
            }
            Err(_) => {
                tracing::warn!("spool append timed out; using the database path");
                Answer::Miss
            }
        }
    }

    /// A tap the database could not answer in time: redirected to its domain's fallback and
    /// spooled (with no click id: the database assigns one when it logs it). None when the
    /// host has no fallback or the spool cannot take it.
    pub async fn fallback(&self, record: &Record, deadline: Duration) -> Option<String> {
        let url = self.cache.domain_fallback(record.host.as_deref())?;
        match tokio::time::timeout(deadline, self.spool.append(record)).await {
            Ok(Ok(())) => Some(url),
            _ => None,
        }
    }
}
