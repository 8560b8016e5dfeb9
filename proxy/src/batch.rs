//! Group commit in one round trip: clicks that arrive while every pooled connection is busy are
//! sent together in one `smslink.track_clicks` call, which logs them in one statement and one
//! transaction. Under light load a batch is one click and nothing waits; under heavy load the
//! batch grows with the queue, so the database pays one round trip, one executor start and one
//! WAL flush per batch instead of per click.
//!
//! A click is answered only after the call that logged it has returned, that is after its
//! transaction committed: batching never acknowledges a click that could still be lost.
//!
//! The converse matters too: a click whose client was already answered with an error (its
//! request timed out, its receiver is gone) is not sent, so it cannot be logged after the client
//! was told it failed. Every pooled connection carries a `statement_timeout` a little below the
//! request timeout, so a stalled statement aborts (and its clicks are not committed) rather than
//! commit after the client got its 503. What remains is a statement that started late in its
//! clicks' budget and commits just after their deadline: rare, and bounded by the margin.
//!
//! A batch that fails because of its data (SQLSTATE class 22, data exception, or 23, integrity
//! violation) is retried one click at a time, so one bad request cannot fail the others. Any
//! other failure (a timeout, a lost connection, a server shutting down) would only fail again,
//! once per click, each time after a long wait: those fail the whole batch at once.

use crate::spool::{Columns, Record};
use deadpool_postgres::{Object, Pool};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;

const TRACK: &str = "SELECT ord, status, location FROM smslink.track_clicks($1, $2, $3, $4, $5, $6, $7::text[]::jsonb[], now(), $8::uuid[])";

/// What the database answered: the status and, for a redirect, the location.
pub type Answer = Result<(i32, Option<String>), String>;

/// One click request on its way to the database: the request as the edge path would spool it
/// (the database path sends the same fields, and ignores the click id), and who waits for it.
pub struct Click {
    pub record: Arc<Record>,
    pub reply: oneshot::Sender<Answer>,
}

impl Click {
    /// True when nobody waits for the answer any more: the request timed out or the client left.
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// The `statement_timeout` of pooled connections for a request timeout: a tenth below it (at
/// least 50 ms below, at least 1 ms), so that the statement gives up before the client does.
pub fn statement_timeout(request_timeout: Duration) -> Duration {
    let margin = (request_timeout / 10).max(Duration::from_millis(50));
    request_timeout
        .saturating_sub(margin)
        .max(Duration::from_millis(1))
}

/// Adds `-c statement_timeout=...` to the connection's startup options (after any options the
/// connection string already had), so that every pooled connection has it from its first
/// statement, without a round trip of its own.
pub fn with_statement_timeout(
    mut config: tokio_postgres::Config,
    request_timeout: Duration,
) -> tokio_postgres::Config {
    let ms = statement_timeout(request_timeout).as_millis();
    let options = match config.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} -c statement_timeout={ms}"),
        _ => format!("-c statement_timeout={ms}"),
    };
    config.options(options);
    config
}

/// True for failures caused by the data of one click (data exception, integrity violation),
/// which retrying the clicks one by one can isolate.
fn caused_by_data(code: Option<&SqlState>) -> bool {
    code.is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

/// How many times the batcher lets other tasks run before gathering a batch while another
/// batch is in flight.
const GATHER_YIELDS: usize = 8;

/// Takes clicks from the queue and sends them to the database in batches of at most
/// `max_batch`, one batch per free pooled connection.
pub async fn run(
    pool: Pool,
    mut queue: mpsc::Receiver<Click>,
    max_batch: usize,
    sizes: prometheus::Histogram,
) {
    while let Some(first) = queue.recv().await {
        if first.abandoned() {
            continue;
        }
        let client = match pool.get().await {
            Ok(c) => c,
            Err(e) => {
                // The clicks waiting now would meet the same fate: answer them all.
                let error = e.to_string();
                let _ = first.reply.send(Err(error.clone()));
                while let Ok(c) = queue.try_recv() {
                    let _ = c.reply.send(Err(error.clone()));
                }
                continue;
            }
        };
        // While other batches are in flight, the taps that their answers release arrive over
        // the next moments: letting the request tasks run a few times before gathering makes one
        // batch of them instead of a batch of one followed by a batch of the rest (the
        // connection is ours meanwhile, so no click waits for a connection because of it).
        let status = pool.status();
        if status.size > status.available + 1 {
            for _ in 0..GATHER_YIELDS {
                if queue.len() + 1 >= max_batch {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        // Waiting for the connection may have taken long enough for the first click's client to
        // give up; the connection goes back to the pool if nothing is left to send.
        let batch = gather(first, &mut queue, max_batch);
        if batch.is_empty() {
            continue;
        }
        sizes.observe(batch.len() as f64);
        tokio::spawn(send(client, batch));
    }
}

/// `first` and whatever else is queued, up to `max_batch` clicks, leaving out the abandoned ones.
fn gather(first: Click, queue: &mut mpsc::Receiver<Click>, max_batch: usize) -> Vec<Click> {
    let mut batch: Vec<Click> = Some(first).into_iter().filter(|c| !c.abandoned()).collect();
    while batch.len() < max_batch {
        match queue.try_recv() {
            Ok(c) if c.abandoned() => {}
            Ok(c) => batch.push(c),
            Err(_) => break,
        }
    }
    batch
}

async fn send(client: Object, batch: Vec<Click>) {
    let mut result = call(&client, &batch).await;
    // A deadlock or serialization failure (class 40) rolled the whole transaction back: nothing
    // of it is logged, so it is retried once as it is (request ids would make even a partial
    // success safe to resend).
    if let Err(e) = &result {
        if e.code().is_some_and(|c| c.code().starts_with("40")) {
            tracing::info!(error = %e, size = batch.len(), "batch rolled back; retrying it once");
            result = call(&client, &batch).await;
        }
    }
    match result {
        Ok(answers) => reply(batch, answers),
        Err(e) if caused_by_data(e.code()) && batch.len() > 1 => {
            tracing::warn!(error = %e, size = batch.len(), "batch failed on its data; retrying its clicks one by one");
            for click in batch {
                if click.abandoned() {
                    continue;
                }
                let one = [click];
                let answer = match call(&client, &one).await {
                    Ok(mut a) => a.pop().unwrap_or_else(|| Err("no answer".into())),
                    Err(e) => Err(e.to_string()),
                };
                let [click] = one;
                let _ = click.reply.send(answer);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, size = batch.len(), "batch failed");
            let error = e.to_string();
            for click in batch {
                let _ = click.reply.send(Err(error.clone()));
            }
        }
    }
}

fn reply(batch: Vec<Click>, answers: Vec<Answer>) {
    for (click, answer) in batch.into_iter().zip(answers) {
        let _ = click.reply.send(answer);
    }
}

/// One `track_clicks` call; the answers are in the batch's order.
async fn call(client: &Object, batch: &[Click]) -> Result<Vec<Answer>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(TRACK).await?;
    let c = Columns::of(batch.iter().map(|c| &*c.record));
    let request_ids: Vec<uuid::Uuid> = batch.iter().map(|c| c.record.id).collect();
    let mut params = c.params().to_vec();
    params.push(&request_ids);
    let rows = client.query(&stmt, &params).await?;
    let mut answers: Vec<Answer> = (0..batch.len())
        .map(|_| Err("the database did not answer this click".to_string()))
        .collect();
    for row in rows {
        let ord: i32 = row.try_get(0)?;
        let answer = (row.try_get(1)?, row.try_get(2)?);
        if let Some(slot) = usize::try_from(ord - 1)
            .ok()
            .and_then(|i| answers.get_mut(i))
        {
            *slot = Ok(answer);
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(token: &str) -> (Click, oneshot::Receiver<Answer>) {
        let (reply, answer) = oneshot::channel();
        let click = Click {
            record: Arc::new(Record {
                id: uuid::Uuid::new_v4(),
                click_id: None,
                at: 0,
                token: token.to_string(),
                host: None,
                method: "GET".into(),
                user_agent: None,
                ip: "127.0.0.1".into(),
                referrer: None,
                headers: "{}".into(),
                link_id: None,
                message_id: None,
            }),
            reply,
        };
        (click, answer)
    }

    #[test]
    fn abandoned_clicks_are_left_out_of_a_batch() {
        let (tx, mut rx) = mpsc::channel(16);
        let (first, first_answer) = click("a");
        let mut kept = vec![first_answer];
        for token in ["b", "c", "d", "e"] {
            let (c, answer) = click(token);
            // The clients of c and e timed out: their receivers are gone.
            if token == "c" || token == "e" {
                drop(answer);
            } else {
                kept.push(answer);
            }
            tx.try_send(c).expect("room in the queue");
        }
        let batch = gather(first, &mut rx, 64);
        let tokens: Vec<&str> = batch.iter().map(|c| c.record.token.as_str()).collect();
        assert_eq!(tokens, ["a", "b", "d"]);
        drop(kept);
    }

    #[test]
    fn an_abandoned_first_click_and_the_batch_limit() {
        let (tx, mut rx) = mpsc::channel(16);
        let (first, first_answer) = click("a");
        drop(first_answer);
        let mut answers = Vec::new();
        for token in ["b", "c", "d"] {
            let (c, answer) = click(token);
            answers.push(answer);
            tx.try_send(c).expect("room in the queue");
        }
        let batch = gather(first, &mut rx, 2);
        let tokens: Vec<&str> = batch.iter().map(|c| c.record.token.as_str()).collect();
        assert_eq!(tokens, ["b", "c"]);
        // The rest stays queued for the next batch.
        assert_eq!(
            rx.try_recv()
                .map(|c| c.record.token.clone())
                .ok()
                .as_deref(),
            Some("d")
        );
    }

    #[test]
    fn only_data_errors_are_retried_one_by_one() {
        assert!(caused_by_data(Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE)));
        assert!(caused_by_data(Some(&SqlState::INVALID_TEXT_REPRESENTATION)));
        assert!(caused_by_data(Some(&SqlState::UNIQUE_VIOLATION)));
        assert!(caused_by_data(Some(&SqlState::CHECK_VIOLATION)));
        // statement_timeout, a server shutting down, a lost connection, a deadlock.
        assert!(!caused_by_data(Some(&SqlState::QUERY_CANCELED)));
        assert!(!caused_by_data(Some(&SqlState::ADMIN_SHUTDOWN)));
        assert!(!caused_by_data(Some(&SqlState::T_R_DEADLOCK_DETECTED)));
        assert!(!caused_by_data(Some(&SqlState::INSUFFICIENT_PRIVILEGE)));
        assert!(!caused_by_data(None));
    }

    #[test]
    fn the_statement_timeout_is_below_the_request_timeout() {
        let ms = |n| Duration::from_millis(n);
        assert_eq!(statement_timeout(ms(2000)), ms(1800));
        assert_eq!(statement_timeout(ms(300)), ms(250));
        assert_eq!(statement_timeout(ms(20)), ms(1));
        let config: tokio_postgres::Config = "host=/tmp user=u".parse().expect("config");
        let config = with_statement_timeout(config, ms(1500));
        assert_eq!(config.get_options(), Some("-c statement_timeout=1350"));
        let config: tokio_postgres::Config = "host=/tmp user=u options='-c work_mem=8MB'"
            .parse()
            .expect("config");
        let config = with_statement_timeout(config, ms(2000));
        assert_eq!(
            config.get_options(),
            Some("-c work_mem=8MB -c statement_timeout=1800")
        );
    }
}
