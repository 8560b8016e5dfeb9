//! One HTTP/1.1 keep-alive connection (hyper's low-level client): open, send a request, read
//! the whole answer, all under a timeout. A connection that broke or timed out is dropped by
//! the caller and a new one opened.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;

pub type Body = Empty<Bytes>;

/// Why a request got no answer.
#[derive(Debug)]
pub enum Failure {
    /// The connection broke (reset, closed early, protocol error).
    Io(String),
    /// No complete answer in time.
    Timeout,
}

pub struct Conn {
    sender: http1::SendRequest<Body>,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    // The driver owns the socket: stopping it closes the connection at once, even with a
    // request still in flight.
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Opens a TCP connection, from `bind` when given, and does the HTTP/1.1 handshake.
pub async fn open(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    timeout: Duration,
) -> Result<Conn, String> {
    let work = async {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| format!("socket: {e}"))?;
        if let Some(ip) = bind {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| format!("bind {ip}: {e}"))?;
        }
        let stream = socket
            .connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let driver = tokio::spawn(async move {
            // The connection's end (or error) shows up in the next send.
            let _ = conn.await;
        });
        Ok(Conn { sender, driver })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("connect {addr}: timed out"))?
}

impl Conn {
    /// The server closed the connection (after a `Connection: close`, or idle).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends one request and reads its whole answer; returns the status and whether the
    /// server said it will close the connection.
    pub async fn send(
        &mut self,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<(u16, bool), Failure> {
        let work = async {
            self.sender
                .ready()
                .await
                .map_err(|e| Failure::Io(e.to_string()))?;
            let res = self
                .sender
                .send_request(req)
                .await
                .map_err(|e| Failure::Io(e.to_string()))?;
            let status = res.status().as_u16();
            let close = res
                .headers()
                .get(hyper::header::CONNECTION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            // The whole body, so that the connection is ready for the next request.
            res.into_body()
                .collect()
                .await
                .map_err(|e| Failure::Io(e.to_string()))?;
            Ok((status, close))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        }
    }
}
