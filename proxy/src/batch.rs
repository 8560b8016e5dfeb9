//! Group commit in one round trip: clicks that arrive while every pooled connection is busy are
//! sent together in one `smslink.track_clicks` call, which logs them in one statement and one
//! transaction. Under light load a batch is one click and nothing waits; under heavy load the
//! batch grows with the queue, so the database pays one round trip, one executor start and one
//! WAL flush per batch instead of per click.
//!
//! A click is answered only after the call that logged it has returned, that is after its
//! transaction committed: batching never acknowledges a click that could still be lost. If a
//! batch fails with a database error (as opposed to a lost connection), its clicks are retried
//! one by one so that one bad request cannot fail the others.

use deadpool_postgres::{Object, Pool};
use tokio::sync::{mpsc, oneshot};

const TRACK: &str = "SELECT ord, status, location FROM smslink.track_clicks($1, $2, $3, $4, $5, $6, $7::text[]::jsonb[])";

/// What the database answered: the status and, for a redirect, the location.
pub type Answer = Result<(i32, Option<String>), String>;

/// One click request on its way to the database.
pub struct Click {
    pub token: String,
    pub host: Option<String>,
    pub method: String,
    pub user_agent: Option<String>,
    pub ip: String,
    pub referrer: Option<String>,
    /// A JSON object of the headers the classifier reads.
    pub headers: String,
    pub reply: oneshot::Sender<Answer>,
}

/// Takes clicks from the queue and sends them to the database in batches of at most
/// `max_batch`, one batch per free pooled connection.
pub async fn run(
    pool: Pool,
    mut queue: mpsc::Receiver<Click>,
    max_batch: usize,
    sizes: prometheus::Histogram,
) {
    while let Some(first) = queue.recv().await {
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
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        sizes.observe(batch.len() as f64);
        tokio::spawn(send(client, batch));
    }
}

async fn send(client: Object, batch: Vec<Click>) {
    match call(&client, &batch).await {
        Ok(answers) => reply(batch, answers),
        Err(e) if e.as_db_error().is_some() && batch.len() > 1 => {
            tracing::warn!(error = %e, size = batch.len(), "batch failed; retrying its clicks one by one");
            for click in batch {
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
    let tokens: Vec<&str> = batch.iter().map(|c| c.token.as_str()).collect();
    let hosts: Vec<Option<&str>> = batch.iter().map(|c| c.host.as_deref()).collect();
    let methods: Vec<&str> = batch.iter().map(|c| c.method.as_str()).collect();
    let agents: Vec<Option<&str>> = batch.iter().map(|c| c.user_agent.as_deref()).collect();
    let ips: Vec<&str> = batch.iter().map(|c| c.ip.as_str()).collect();
    let referrers: Vec<Option<&str>> = batch.iter().map(|c| c.referrer.as_deref()).collect();
    let headers: Vec<&str> = batch.iter().map(|c| c.headers.as_str()).collect();
    let rows = client
        .query(
            &stmt,
            &[
                &tokens, &hosts, &methods, &agents, &ips, &referrers, &headers,
            ],
        )
        .await?;
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
