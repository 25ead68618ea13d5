//! HTTP/1.1 keep-alive connections to a loopback target, one request in flight per connection,
//! as a client with a fixed pool of connections drives a server.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The server under load: a plain-HTTP base URL on a loopback address.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header of every request (`host:port` of the URL).
    pub host: HeaderValue,
}

impl Target {
    /// Parses `http://HOST:PORT` and resolves it. Anything but a loopback address is refused: load
    /// from this tool is only ever meant for a server on the same machine.
    pub async fn parse(url: &str) -> anyhow::Result<Self> {
        let authority = url
            .strip_prefix("http://")
            .with_context(|| format!("{url}: only plain http:// URLs are supported"))?
            .trim_end_matches('/');
        if authority.contains('/') {
            bail!("{url}: give the server's base URL, without a path");
        }
        let addr = tokio::net::lookup_host(authority)
            .await
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to no address"))?;
        if !addr.ip().is_loopback() {
            bail!("{url} is not a loopback address: the load generator only targets this machine");
        }
        let host = HeaderValue::from_str(authority).with_context(|| format!("{authority} is not a valid Host"))?;
        Ok(Self { addr, host })
    }
}

/// One keep-alive connection.
#[derive(Debug)]
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(target: &Target) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(target.addr).await?;
        // Requests are small and answered one at a time: Nagle would only add delay.
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // Drives the socket until the sender is dropped or the server closes it.
        tokio::spawn(async move {
            let _closed = connection.await;
        });
        Ok(Self { sender })
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// A single request on a connection of its own, for the preparation before the load.
pub async fn once(target: &Target, request: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)> {
    Connection::open(target).await.with_context(|| format!("connecting to {}", target.addr))?.send(request).await
}
