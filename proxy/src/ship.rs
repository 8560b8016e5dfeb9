//! The shipper: sends spooled clicks to the database in bulk with `smslink.ingest_clicks`, in
//! spool order, and deletes a segment once all of its records are committed. A batch that fails
//! for want of the database (timeout, lost connection, shutdown) is retried, with backoff, until
//! it commits; the spool keeps growing meanwhile and taps keep being answered. A batch the
//! database refuses as data (SQLSTATE class 22 or 23) is split and retried record by record; a
//! record refused on its own is set aside in `rejected.jsonl` (never dropped) and counted.
//!
//! Also here: the click-id lease. Taps answered at the edge get their click id (the landing
//! page's `{click_id}`) from a block of ids the database leased to this proxy
//! (`smslink.edge_lease_click_ids`). The lease is kept in the spool directory with a high-water
//! mark written ahead of use, so a restarted proxy never hands out an id twice, even while the
//! database is unreachable.

use crate::spool::{complete_lines, now_micros, segment_path, Columns, Record, Spool};
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const INGEST: &str =
    "SELECT ord, status FROM smslink.ingest_clicks($1::uuid[], $2::int8[], $3::timestamptz[], \
     $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]::jsonb[], \
     $11::int8[], $12::int8[])";

fn time_of(micros: i64) -> SystemTime {
    if micros >= 0 {
        UNIX_EPOCH + Duration::from_micros(micros.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
    }
}

/// Why a batch did not commit.
enum Failure {
    /// The data: retry record by record.
    Data(String),
    /// Anything else: retry the batch later.
    Unavailable(String),
}

async fn ingest(pool: &Pool, batch: &[Record]) -> Result<(), Failure> {
    let client = pool
        .get()
        .await
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
    let stmt = client
        .prepare_cached(INGEST)
        .await
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
    let ids: Vec<uuid::Uuid> = batch.iter().map(|r| r.id).collect();
    let click_ids: Vec<Option<i64>> = batch.iter().map(|r| r.click_id).collect();
    let ats: Vec<SystemTime> = batch.iter().map(|r| time_of(r.at)).collect();
    let c = Columns::of(batch.iter());
    let link_ids: Vec<Option<i64>> = batch.iter().map(|r| r.link_id).collect();
    let message_ids: Vec<Option<i64>> = batch.iter().map(|r| r.message_id).collect();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&ids, &click_ids, &ats];
    params.extend(c.params());
    params.push(&link_ids);
    params.push(&message_ids);
    client.query(&stmt, &params).await.map(|_| ()).map_err(|e| {
        let data = e
            .code()
            .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"));
        if data {
            Failure::Data(e.to_string())
        } else {
            Failure::Unavailable(e.to_string())
        }
    })
}

/// Which of `parts` connections ships a token's taps: always the same one, so that the taps of
/// one link are committed in spool order even with several batches in flight.
fn part_of(token: &str, parts: usize) -> usize {
    let h = token.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % parts.max(1) as u64) as usize
}

/// One connection's share of a batch, and who waits for its commit.
struct Part {
    records: Vec<Record>,
    committed: tokio::sync::oneshot::Sender<()>,
}

/// Ships `records` until they are committed: a batch the database cannot take now is retried
/// with backoff (request ids make a retry of a batch that did commit harmless); one it refuses
/// as data goes record by record.
async fn ship_until_committed(
    pool: &Pool,
    records: &[Record],
    dir: &Path,
    metrics: &ShipMetrics,
    counters: &crate::spool::Counters,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let started = std::time::Instant::now();
        match ingest(pool, records).await {
            Ok(()) => {
                metrics.committed.inc_by(records.len() as u64);
                metrics
                    .batch_seconds
                    .observe(started.elapsed().as_secs_f64());
                return;
            }
            Err(Failure::Data(e)) => {
                tracing::warn!(error = %e, size = records.len(), "spooled batch refused; shipping its clicks one by one");
                if ship_one_by_one(pool, records, dir, metrics).await {
                    return;
                }
            }
            Err(Failure::Unavailable(e)) => {
                tracing::warn!(error = %e, pending = counters.pending.load(Ordering::Relaxed), "cannot ship spooled clicks yet; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One shipping connection: commits its parts one after the other, in the order received.
async fn worker(
    pool: Pool,
    mut parts: tokio::sync::mpsc::Receiver<Part>,
    dir: PathBuf,
    metrics: ShipMetrics,
    counters: Arc<crate::spool::Counters>,
) {
    while let Some(part) = parts.recv().await {
        ship_until_committed(&pool, &part.records, &dir, &metrics, &counters).await;
        let _ = part.committed.send(());
    }
}

/// What the reader has handed out and not yet seen committed, oldest first.
enum InFlight {
    /// A batch: one receiver per part; its records; the time of its first record.
    Batch {
        parts: Vec<tokio::sync::oneshot::Receiver<()>>,
        records: usize,
        first_at: i64,
    },
    /// A segment read to its end: removed once every batch before it has committed.
    Remove(PathBuf),
}

/// Batches in flight at most (the oldest uncommitted one included): the next batch is parsed and queued while
/// the database commits the current one, so the database never waits for the shipper.
const READ_AHEAD: usize = 2;

/// Where the reader is: the segment it reads and the bytes of it already handed out.
struct Cursor {
    segment: u64,
    offset: u64,
}

/// Ships the spool forever (until the process ends), over `parts` connections at once, at most
/// `max_batch` records per read. Each batch is split by token, one part per connection
/// (ingest_clicks calls side by side, like the database path's concurrent transactions: a click
/// sees the related clicks of another part once they are committed, as on that path), and each
/// connection commits its parts in order. A batch is done when all its parts are; a segment is
/// removed only when every batch read from it is done.
pub async fn run(spool: Spool, pool: Pool, max_batch: usize, parts: usize, metrics: ShipMetrics) {
    let dir = spool.dir().to_path_buf();
    let parts = parts.max(1);
    let senders: Vec<tokio::sync::mpsc::Sender<Part>> = (0..parts)
        .map(|_| {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(worker(
                pool.clone(),
                rx,
                dir.clone(),
                metrics.clone(),
                spool.counters.clone(),
            ));
            tx
        })
        .collect();
    let mut cursor = Cursor {
        segment: spool
            .recovered
            .first()
            .copied()
            .unwrap_or(spool.durable().segment),
        offset: 0,
    };
    let mut in_flight: std::collections::VecDeque<InFlight> = std::collections::VecDeque::new();
    loop {
        let batches = in_flight
            .iter()
            .filter(|f| matches!(f, InFlight::Batch { .. }))
            .count();
        if batches >= READ_AHEAD {
            if !retire(&mut in_flight, &spool).await {
                break;
            }
            continue;
        }
        let durable = spool.durable();
        // How far this segment may be read: all of it if the writer has moved on (or it was
        // left by an earlier process), else up to what the writer made durable.
        let limit = if cursor.segment < durable.segment {
            u64::MAX
        } else {
            durable.bytes
        };
        let path = segment_path(&dir, cursor.segment);
        let bytes = match read_from(&path, cursor.offset, limit) {
            Ok(b) => b,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && cursor.segment < durable.segment =>
            {
                cursor = Cursor {
                    segment: cursor.segment + 1,
                    offset: 0,
                };
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::error!(error = %e, path = %path.display(), "cannot read the spool");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut lines: Vec<&[u8]> = complete_lines(&bytes).take(max_batch).collect();
        if lines.is_empty() {
            if cursor.segment < durable.segment {
                // Read to its end: it goes once everything read from it is committed.
                in_flight.push_back(InFlight::Remove(path));
                cursor = Cursor {
                    segment: cursor.segment + 1,
                    offset: 0,
                };
                continue;
            }
            if !in_flight.is_empty() {
                if !retire(&mut in_flight, &spool).await {
                    break;
                }
                continue;
            }
            spool.counters.oldest_at.store(0, Ordering::Relaxed);
            // Wait for more, but look again now and then (the notification may have raced).
            let _ = tokio::time::timeout(Duration::from_millis(200), spool.wake.notified()).await;
            continue;
        }
        let consumed: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        let mut split: Vec<Vec<Record>> = (0..parts).map(|_| Vec::new()).collect();
        let mut corrupt = Vec::new();
        let mut records = 0usize;
        let mut first_at = None;
        for line in lines.drain(..) {
            match serde_json::from_slice::<Record>(line) {
                Ok(r) => {
                    first_at.get_or_insert(r.at);
                    records += 1;
                    split[part_of(&r.token, parts)].push(r);
                }
                Err(_) => corrupt.push(line.to_vec()),
            }
        }
        for line in &corrupt {
            set_aside(&dir, line, "unreadable spool line");
        }
        let first_at = first_at.unwrap_or(0);
        if in_flight.is_empty() {
            spool.counters.oldest_at.store(first_at, Ordering::Relaxed);
        }
        let mut waits = Vec::with_capacity(parts);
        for (part, sender) in split.into_iter().zip(&senders) {
            if part.is_empty() {
                continue;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            let part = Part {
                records: part,
                committed: tx,
            };
            if sender.send(part).await.is_err() {
                // A worker ended (it never does while the process runs): stop shipping; the
                // spool keeps everything for the next start.
                break;
            }
            waits.push(rx);
        }
        in_flight.push_back(InFlight::Batch {
            parts: waits,
            records: records + corrupt.len(),
            first_at,
        });
        cursor.offset += consumed;
    }
    // A worker ended (it never does while the process runs, short of a panic): shipping stops,
    // and the spool keeps every uncommitted click for the next start.
    tracing::error!("a spool shipping worker ended; shipping stops until the proxy restarts");
}

/// Waits for the oldest batch in flight to commit, then removes the segments read to their end
/// before the next batch. False when a worker is gone: nothing more is counted as committed.
async fn retire(in_flight: &mut std::collections::VecDeque<InFlight>, spool: &Spool) -> bool {
    if matches!(in_flight.front(), Some(InFlight::Batch { .. })) {
        if let Some(InFlight::Batch { parts, records, .. }) = in_flight.pop_front() {
            for part in parts {
                if part.await.is_err() {
                    return false;
                }
            }
            spool
                .counters
                .pending
                .fetch_sub(records as i64, Ordering::Relaxed);
        }
    }
    while matches!(in_flight.front(), Some(InFlight::Remove(_))) {
        if let Some(InFlight::Remove(path)) = in_flight.pop_front() {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(error = %e, path = %path.display(), "cannot remove a shipped segment");
                }
            }
        }
    }
    if let Some(InFlight::Batch { first_at, .. }) = in_flight.front() {
        spool.counters.oldest_at.store(*first_at, Ordering::Relaxed);
    }
    true
}

/// Ships records one at a time after their batch was refused; false when the database became
/// unavailable meanwhile (the caller retries the whole batch: request ids make that safe).
async fn ship_one_by_one(
    pool: &Pool,
    records: &[Record],
    dir: &Path,
    metrics: &ShipMetrics,
) -> bool {
    for r in records {
        match ingest(pool, std::slice::from_ref(r)).await {
            Ok(()) => metrics.committed.inc(),
            Err(Failure::Data(e)) => {
                let line = serde_json::to_vec(r).unwrap_or_default();
                set_aside(dir, &line, &e);
                metrics.rejected.inc();
            }
            Err(Failure::Unavailable(_)) => return false,
        }
    }
    true
}

/// Appends a record the database refused to `rejected.jsonl`, with the reason, and fsyncs it:
/// nothing acknowledged is ever dropped silently.
fn set_aside(dir: &Path, line: &[u8], reason: &str) {
    use std::io::Write;
    let entry = serde_json::json!({
        "at": now_micros(),
        "reason": reason,
        "record": String::from_utf8_lossy(line),
    });
    let path = dir.join("rejected.jsonl");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(format!("{entry}\n").as_bytes())?;
            f.sync_data()
        });
    match written {
        Ok(()) => {
            tracing::error!(%reason, path = %path.display(), "a spooled click was refused by the database; set aside")
        }
        Err(e) => tracing::error!(error = %e, %reason, "cannot set a refused click aside"),
    }
}

fn read_from(path: &Path, offset: u64, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    // At most 8 MiB a round: a long backlog is shipped in steps.
    let want = limit.saturating_sub(offset).min(8 * 1024 * 1024);
    f.take(want).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The shipper's Prometheus metrics.
#[derive(Clone)]
pub struct ShipMetrics {
    pub committed: prometheus::IntCounter,
    pub rejected: prometheus::IntCounter,
    pub batch_seconds: prometheus::Histogram,
}

impl ShipMetrics {
    pub fn new(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let committed = prometheus::IntCounter::new(
            "smslink_proxy_spool_shipped_total",
            "Spooled clicks committed to the database",
        )?;
        let rejected = prometheus::IntCounter::new(
            "smslink_proxy_spool_rejected_total",
            "Spooled clicks the database refused as data, set aside in rejected.jsonl",
        )?;
        let batch_seconds = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "smslink_proxy_spool_batch_seconds",
                "Time to commit one batch of spooled clicks",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
        )?;
        registry.register(Box::new(committed.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(batch_seconds.clone()))?;
        Ok(ShipMetrics {
            committed,
            rejected,
            batch_seconds,
        })
    }
}

/// Ids are written ahead of use in steps of this many (one fsync per step).
const ID_STEP: i64 = 4096;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
struct Block {
    first: i64,
    last: i64,
}

/// The lease file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct LeaseState {
    current: Option<Block>,
    /// Ids below this in `current` may have been handed out already.
    high_water: i64,
    /// The block to switch to when `current` runs out.
    next: Option<Block>,
}

/// Click ids for taps answered at the edge.
pub struct ClickIds {
    path: PathBuf,
    state: Mutex<(LeaseState, i64)>,
}

impl ClickIds {
    /// Loads the lease from the spool directory (none yet: no ids until the database leases a
    /// block). A restarted proxy continues after the high-water mark.
    pub fn open(dir: &Path) -> Result<Arc<ClickIds>, String> {
        let path = dir.join("click-ids.json");
        let state: LeaseState = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("{}: {e} (remove it to start a new lease)", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => LeaseState::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let next = state.high_water;
        Ok(Arc::new(ClickIds {
            path,
            state: Mutex::new((state, next)),
        }))
    }

    fn save(&self, state: &LeaseState) -> Result<(), String> {
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(d) = self.path.parent() {
                std::fs::File::open(d)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// The next click id, or None when no leased id is left.
    pub fn next(&self) -> Option<i64> {
        let mut guard = self.state.lock().ok()?;
        let (state, next) = &mut *guard;
        loop {
            let block = state.current?;
            if *next < block.first {
                *next = block.first;
            }
            if *next > block.last {
                state.current = state.next.take();
                *next = state.current.map_or(0, |b| b.first);
                state.high_water = *next;
                continue;
            }
            if *next >= state.high_water {
                let mut ahead = state.clone();
                ahead.high_water = (*next + ID_STEP).min(block.last + 1);
                if let Err(e) = self.save(&ahead) {
                    tracing::error!(error = %e, "cannot persist the click-id lease");
                    return None;
                }
                *state = ahead;
            }
            let id = *next;
            *next += 1;
            return Some(id);
        }
    }

    /// Whether a new block should be leased: none is waiting and the current one is more than
    /// half used (or there is none).
    fn wants_block(&self) -> bool {
        self.state.lock().is_ok_and(|g| {
            let (state, next) = &*g;
            state.next.is_none()
                && state
                    .current
                    .is_none_or(|b| *next > b.first + (b.last - b.first) / 2)
        })
    }

    fn add_block(&self, block: Block) -> Result<(), String> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| "lease lock poisoned".to_string())?;
        let (state, next) = &mut *guard;
        let mut updated = state.clone();
        if updated.current.is_none() {
            updated.current = Some(block);
            updated.high_water = block.first;
            *next = block.first;
        } else {
            updated.next = Some(block);
        }
        self.save(&updated)?;
        *state = updated;
        Ok(())
    }

    /// Keeps a block in reserve: leases one from the database whenever it is wanted.
    pub async fn keep_leased(self: Arc<Self>, pool: Pool) {
        loop {
            if self.wants_block() {
                let leased = async {
                    let c = pool.get().await.map_err(|e| e.to_string())?;
                    let row = c
                        .query_one(
                            "SELECT first_id, last_id FROM smslink.edge_lease_click_ids()",
                            &[],
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    let first: i64 = row.try_get(0).map_err(|e| e.to_string())?;
                    let last: i64 = row.try_get(1).map_err(|e| e.to_string())?;
                    Ok::<_, String>(Block { first, last })
                };
                match tokio::time::timeout(Duration::from_secs(5), leased).await {
                    Ok(Ok(block)) => {
                        if let Err(e) = self.add_block(block) {
                            tracing::error!(error = %e, "cannot keep the click-id lease");
                        }
                        continue;
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot lease click ids yet"),
                    Err(_) => tracing::warn!("leasing click ids timed out"),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn click_ids_never_repeat_across_restarts_and_blocks() {
        let dir = std::env::temp_dir().join(format!("smslink-ids-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let ids = ClickIds::open(&dir).expect("open");
        assert_eq!(ids.next(), None, "no lease, no ids");
        assert!(ids.wants_block());
        ids.add_block(Block {
            first: 1000,
            last: 9999,
        })
        .expect("block");
        let a: Vec<i64> = (0..10).filter_map(|_| ids.next()).collect();
        assert_eq!(a, (1000..1010).collect::<Vec<_>>());
        // A restart continues after the high-water mark: nothing handed out is repeated.
        drop(ids);
        let ids = ClickIds::open(&dir).expect("reopen");
        let b = ids.next().expect("id");
        assert!(b >= 1010, "{b}");
        // Running out of the block switches to the reserve block.
        ids.add_block(Block {
            first: 50_000,
            last: 50_001,
        })
        .expect("reserve");
        let mut last = b;
        for _ in 0..20_000 {
            match ids.next() {
                Some(id) => {
                    assert!(id > last);
                    last = id;
                }
                None => break,
            }
        }
        assert_eq!(last, 50_001);
        assert_eq!(ids.next(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
