//! hyper answers some requests by itself, before any handler runs: those
//! it cannot parse (400), a path too long (414) or headers too large
//! (431), with no body. This stream wrapper, between hyper and the
//! connection (above TLS, so it sees plain HTTP), gives them the JSON
//! error body every other answer has. Writes stay vectored when the
//! stream's are, so hyper writes a body from where it is rather than
//! through a buffer it keeps.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wormhole_sync_core::wire::{ErrorCode, WireError};

/// A stream whose bodiless error answers from hyper become JSON ones.
pub(crate) struct JsonErrorAnswers<S> {
    inner: S,
    /// The JSON answer that replaces hyper's bodiless one, and how much of
    /// it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<S: AsyncWrite + Unpin> JsonErrorAnswers<S> {
    pub(crate) fn new(inner: S) -> JsonErrorAnswers<S> {
        JsonErrorAnswers { inner, replacement: None }
    }

    /// Writes what is left of a replacement answer; Ready once it is all out.
    fn drain_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                self.replacement = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// If `head` is an answer hyper wrote by itself, takes it whole in place
    /// of hyper's bytes and starts writing the JSON one. Its bytes count as
    /// written even if the JSON is not out yet (the next write or flush
    /// finishes it), so hyper never hands the same head over twice.
    fn take_automatic_answer(&mut self, cx: &mut Context<'_>, head: &[u8]) -> Option<Poll<io::Result<usize>>> {
        let answer = json_for_automatic_answer(head)?;
        self.replacement = Some((answer, 0));
        Some(match self.drain_replacement(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(head.len())),
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrorAnswers<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonErrorAnswers<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drain_replacement(cx))?;
        if let Some(taken) = self.take_automatic_answer(cx, buf) {
            return taken;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    // Vectored, as the stream is: hyper then queues an answer's body as it
    // is instead of copying it into its write buffer, whose capacity it
    // keeps for the connection's life (about 1 MiB held by every kept-alive
    // connection after one large answer). An automatic answer, a head
    // without a body, still arrives whole, as one slice.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drain_replacement(cx))?;
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            if let Some(taken) = self.take_automatic_answer(cx, only) {
                return taken;
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain_replacement(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The JSON answer for one hyper writes by itself: an error status with an
/// empty body and no content type (every answer of ours has one).
fn json_for_automatic_answer(buf: &[u8]) -> Option<Vec<u8>> {
    let status: u16 = std::str::from_utf8(buf.strip_prefix(b"HTTP/1.1 ")?.get(..3)?).ok()?.parse().ok()?;
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !(400..=599).contains(&status) || head.contains("\r\ncontent-type:") || head_end != buf.len() {
        return None;
    }
    let (code, reason, message) = match status {
        431 => (ErrorCode::HeadersTooLarge, "Request Header Fields Too Large", "the request headers are too large"),
        414 => (ErrorCode::HeadersTooLarge, "URI Too Long", "the request path is too long"),
        _ => (ErrorCode::BadRequest, "Bad Request", "the request is not well-formed HTTP/1.1"),
    };
    let body = WireError::new(code, message).to_json();
    let mut answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    Some(answer)
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn pair() -> (JsonErrorAnswers<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (JsonErrorAnswers::new(server), client)
    }

    /// Vectored, hyper queues a body instead of copying it into a buffer it
    /// keeps: 987 KiB held per kept-alive connection after a 1 MiB answer
    /// before, 27 KiB after (tools/connection_memory.py --large-answers).
    #[tokio::test]
    async fn writes_are_vectored_and_automatic_answers_still_become_json() {
        let (mut server, mut client) = pair().await;
        assert!(server.is_write_vectored());
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        let written = server.write_vectored(&[IoSlice::new(b""), IoSlice::new(head)]).await.unwrap();
        assert_eq!(written, head.len());
        server.shutdown().await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert!(answer.contains(r#""error":"headers-too-large""#), "{answer}");
        // Ordinary answers pass through as they are, in pieces.
        let (mut server, mut client) = pair().await;
        let parts = [IoSlice::new(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"), IoSlice::new(b"{}")];
        let sent = server.write_vectored(&parts).await.unwrap();
        server.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer.len(), sent);
        assert!(answer.starts_with(b"HTTP/1.1 200 OK"));
    }
}
