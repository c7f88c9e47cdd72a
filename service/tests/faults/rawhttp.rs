//! A minimal HTTP/1.1 client over a raw tokio `TcpStream`: keep-alive GETs without a client
//! library's pool, so a test controls exactly how many connections exist and what bytes go out.

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(1024),
        })
    }

    /// Sends `GET path` and reads the whole response; returns its status.
    pub async fn get(&mut self, path: &str) -> std::io::Result<u16> {
        self.send_get(path).await?;
        self.read_response().await
    }

    /// Sends `GET path` (keep-alive).
    pub async fn send_get(&mut self, path: &str) -> std::io::Result<()> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: faults\r\n\r\n");
        self.stream.write_all(request.as_bytes()).await
    }

    /// Reads one whole response; returns its status.
    pub async fn read_response(&mut self) -> std::io::Result<u16> {
        self.buf.clear();
        loop {
            if let Some((status, head_len, body_len)) = parse_head(&self.buf) {
                while self.buf.len() < head_len + body_len {
                    self.read_more().await?;
                }
                return Ok(status);
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// Status, head length and `content-length` of a response whose head is complete.
fn parse_head(buf: &[u8]) -> Option<(u16, usize, usize)> {
    let head_len = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_len]).ok()?;
    let status = head.get(9..12)?.parse().ok()?;
    let body_len = head
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    Some((status, head_len, body_len))
}
