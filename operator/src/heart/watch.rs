//! Noticing the nameserver's death at once: a connection held open to its admin port closes.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// Holds a connection open to the nameserver's admin port at `addr` and signals `closed` each time
/// it closes: at once when the nameserver dies, for the kernel closes a dead process's sockets, so
/// the heart looks then instead of at its next tick. A close is only a reason to look — the
/// verdict is the health check's, as on a tick — and a nameserver that is not there is tried again
/// every `retry`.
///
/// The connection is an idle HTTP/2 client (the admin server speaks gRPC): the preface and empty
/// settings, then it acknowledges the server's settings and answers its pings and nothing else. It
/// must be a well-behaved one: a server shutting down gracefully sends GOAWAY and a ping and waits
/// for the answer before it closes its connections — a silent socket would hold its exit up.
pub async fn watch_nameserver(addr: String, closed: Arc<Notify>, retry: Duration) {
    loop {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(&addr)).await
        {
            let _ = s.set_nodelay(true);
            let _ = idle_http2(s).await;
            closed.notify_one();
        }
        tokio::time::sleep(retry).await;
    }
}

/// HTTP/2 frame types and flags (RFC 9113) the idle connection deals with.
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;

/// Speaks just enough HTTP/2 to stay open until the server closes or dies: returns then.
async fn idle_http2(mut s: tokio::net::TcpStream) -> std::io::Result<()> {
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&frame(SETTINGS, 0, &[]));
    s.write_all(&hello).await?;
    let mut head = [0u8; 9];
    let mut payload = Vec::new();
    loop {
        s.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        // (we advertised no larger frames than the default 16 KiB)
        if len > 16_384 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "HTTP/2 frame too large"));
        }
        payload.resize(len, 0);
        s.read_exact(&mut payload).await?;
        match kind {
            SETTINGS if flags & ACK == 0 => s.write_all(&frame(SETTINGS, ACK, &[])).await?,
            PING if flags & ACK == 0 => s.write_all(&frame(PING, ACK, &payload)).await?,
            _ => {} // GOAWAY: the server closes soon; window updates and the rest: nothing to do
        }
    }
}

/// One frame on stream 0.
fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 0];
    f.extend_from_slice(payload);
    f
}
