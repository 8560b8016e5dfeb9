//! Token keys and the token codec in SQL.
//!
//! Keys live in `smslink_secret.token_key`, readable only by its owner. The functions here read it by
//! switching to the owner for that one query, the way SECURITY DEFINER does, so that callers
//! can make and resolve tokens without ever seeing a key.
//!
//! Decoding uses a per-backend key ring: a forged token is rejected from memory. A token whose
//! key slot is not in the ring triggers a reload at most once per second, so a flood of forged
//! tokens cannot turn into a flood of queries. A key version never changes its key (versions come
//! from a sequence), so a cached key is never wrong, but a key can be deleted (revoked): the ring
//! is reloaded when it is ten seconds old, so a revoked key stops resolving in every session
//! within that bound. Encoding always asks the table for the current version, so a rotation in
//! any session takes effect at once.

use crate::errors::{raise, raise_hint, SpiOk, INVALID_PARAMETER, WRONG_STATE};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use smslink_core::token::{Decoded, KeyRing, TokenKey, KEY_BYTES};
use std::cell::RefCell;
use std::time::{Duration, Instant};

const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// A backend's key ring is reloaded when it is this old, so that a key deleted from
/// `smslink_secret.token_key` (revoked) stops resolving in every session within this bound.
pub const RING_LIFETIME: Duration = Duration::from_secs(10);

thread_local! {
    static RING: RefCell<Option<(KeyRing, Instant)>> = const { RefCell::new(None) };
}

/// Runs `f` with the current user switched to the owner of `smslink_secret.token_key`.
fn as_key_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner: pg_sys::Oid = Spi::connect(|c| {
        c.select(
            // By name in the catalogue rather than a regclass cast: the caller cannot use the
            // schema, so it cannot resolve the name.
            "SELECT c.relowner FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'smslink_secret' AND c.relname = 'token_key'",
            None,
            &[],
        )?
        .first()
        .get_one::<pg_sys::Oid>()
    })
    .spi()
    .unwrap_or_else(|| {
        raise(
            WRONG_STATE,
            "smslink_secret.token_key is missing; reinstall the extension",
        )
    });
    let mut user = pg_sys::Oid::INVALID;
    let mut context: std::ffi::c_int = 0;
    // SAFETY: plain calls into the backend's user-id bookkeeping. If `f` raises an ERROR, the
    // transaction abort restores the user id saved at transaction start.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as std::ffi::c_int,
        );
    }
    let out = f();
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    out
}

fn key_from_row(version: Option<i32>, key: Option<Vec<u8>>) -> TokenKey {
    match (version, key) {
        (Some(v), Some(k)) => TokenKey::new(v, &k).unwrap_or_else(|e| {
            raise(
                PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                format!("token key {v}: {e}"),
            )
        }),
        _ => raise(WRONG_STATE, "smslink_secret.token_key holds a NULL row"),
    }
}

fn load_ring() -> KeyRing {
    let rows = as_key_owner(|| {
        Spi::connect(|c| {
            let mut out = Vec::new();
            for row in c.select(
                "SELECT version, key FROM smslink_secret.token_key",
                None,
                &[],
            )? {
                out.push((row.get::<i32>(1)?, row.get::<Vec<u8>>(2)?));
            }
            Ok::<_, pgrx::spi::SpiError>(out)
        })
        .spi()
    });
    let mut ring = KeyRing::new();
    for (v, k) in rows {
        ring.insert(key_from_row(v, k));
    }
    ring
}

/// The current (highest-version) key, read from the table so that rotations in any session
/// apply at once.
pub fn current_key() -> TokenKey {
    let row = as_key_owner(|| {
        Spi::connect(|c| {
            let t = c.select(
                "SELECT version, key FROM smslink_secret.token_key ORDER BY version DESC LIMIT 1",
                None,
                &[],
            )?;
            if t.is_empty() {
                return Ok(None);
            }
            let t = t.first();
            Ok::<_, pgrx::spi::SpiError>(Some((t.get::<i32>(1)?, t.get::<Vec<u8>>(2)?)))
        })
        .spi()
    });
    match row {
        Some((v, k)) => key_from_row(v, k),
        None => raise_hint(
            WRONG_STATE,
            "there is no token key",
            "the extension owner can create one with SELECT smslink.rotate_token_key()",
        ),
    }
}

/// Decodes a token to a link id, or `None`. Touches no table unless the token names a key slot
/// this backend has not loaded (then at most one reload per second), or the ring is older than
/// [`RING_LIFETIME`] (one query then).
pub fn decode(token: &str) -> Option<i64> {
    RING.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot
            .as_ref()
            .is_none_or(|(_, loaded)| loaded.elapsed() >= RING_LIFETIME)
        {
            *slot = Some((load_ring(), Instant::now()));
        }
        let (ring, loaded) = slot.as_ref()?;
        match ring.decode(token) {
            Decoded::Link(id) => Some(id),
            Decoded::Invalid => None,
            Decoded::UnknownSlot(_) if loaded.elapsed() < RELOAD_AT_MOST_EVERY => None,
            Decoded::UnknownSlot(_) => {
                let ring = load_ring();
                let out = match ring.decode(token) {
                    Decoded::Link(id) => Some(id),
                    _ => None,
                };
                *slot = Some((ring, Instant::now()));
                out
            }
        }
    })
}

pub fn check_length(length: i32) -> usize {
    match usize::try_from(length) {
        Ok(l) if (smslink_core::token::MIN_LEN..=smslink_core::token::MAX_LEN).contains(&l) => l,
        _ => raise(
            INVALID_PARAMETER,
            format!("invalid token length: {length} (must be between 7 and 12)"),
        ),
    }
}

/// Encodes with a given key, raising a clear error when the id does not fit.
pub fn encode_with(key: &TokenKey, link_id: i64, length: usize) -> String {
    key.encode(link_id, length)
        .unwrap_or_else(|e| raise(INVALID_PARAMETER, e.to_string()))
}

/// The token for a link id under the current key. Stable within a statement; after a key
/// rotation it returns a new token, and the old one still resolves.
#[pg_extern(stable, strict, parallel_restricted)]
fn token_for(link_id: i64, length: default!(i32, 9)) -> String {
    let length = check_length(length);
    encode_with(&current_key(), link_id, length)
}

/// The link id a token stands for, or NULL for anything that is not a valid token. Never
/// raises; never reads the link table.
#[pg_extern(stable, strict, parallel_restricted)]
fn link_id(token: &str) -> Option<i64> {
    decode(token)
}

/// Makes a new random key current and returns its version. Tokens made under older keys keep
/// resolving (up to 62 live versions; the 63rd rotation retires version 1, and so on).
/// Executable by the owner and `smslink_admin`; the key is written as the owner of
/// `smslink_secret.token_key`, which no other role can read.
#[pg_extern(volatile)]
fn rotate_token_key() -> i32 {
    let mut key = [0u8; KEY_BYTES];
    // SAFETY: writes exactly key.len() bytes into the buffer.
    let ok = unsafe { pg_sys::pg_strong_random(key.as_mut_ptr().cast(), key.len()) };
    if !ok {
        raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "could not generate random bytes for a token key",
        );
    }
    let version = as_key_owner(|| {
        Spi::connect_mut(|c| {
            c.update(
                "INSERT INTO smslink_secret.token_key (version, key) \
                 VALUES (nextval('smslink_secret.token_key_version_seq'), $1) RETURNING version",
                None,
                &[key.to_vec().into()],
            )?
            .first()
            .get_one::<i32>()
        })
    })
    .spi()
    .unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "key insert returned nothing",
        )
    });
    RING.with(|cell| *cell.borrow_mut() = None);
    version
}
