//! The pieces of `smslink-load`: checked input and pacing (`parse`), one HTTP/1.1 connection
//! (`client`), the paced request loop (`run`), idle connections (`idle`), a replayed stream
//! (`replay`) and the summary arithmetic (`stats`).

pub mod client;
pub mod idle;
pub mod parse;
pub mod replay;
pub mod run;
pub mod stats;
