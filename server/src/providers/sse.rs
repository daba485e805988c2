//! The one server-sent-events reader for upstream streams: bounded event size, idle timeout.

use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};

use super::{map_reqwest, UpstreamError};

/// The largest single event accepted from an upstream; beyond it the stream is treated as broken
/// instead of buffering without bound.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Tracks the bytes since the last blank line so a never-ending event cannot grow memory.
fn guard_event_size(
    bytes: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, UpstreamError>> + Send + 'static {
    let mut since_boundary = 0usize;
    bytes.map(move |part| {
        let part = part.map_err(map_reqwest)?;
        match last_boundary(&part) {
            Some(end) => since_boundary = part.len() - end,
            None => since_boundary += part.len(),
        }
        if since_boundary > MAX_EVENT_BYTES {
            return Err(UpstreamError::Protocol(
                "an upstream event exceeded the size limit".into(),
            ));
        }
        Ok(part)
    })
}

/// Position just past the last `\n\n` (or `\r\n\r\n`) in `b`.
fn last_boundary(b: &[u8]) -> Option<usize> {
    let lf = b.windows(2).rposition(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = b.windows(3).rposition(|w| w == b"\n\r\n").map(|i| i + 3);
    lf.max(crlf)
}

/// Parses an upstream response as SSE, failing an event that takes longer than `idle` to arrive.
pub fn events(
    resp: reqwest::Response,
    idle: Duration,
) -> impl Stream<Item = Result<Event, UpstreamError>> + Send + 'static {
    let inner = guard_event_size(resp.bytes_stream()).eventsource();
    futures_util::stream::unfold(Box::pin(inner), move |mut inner| async move {
        match tokio::time::timeout(idle, inner.next()).await {
            Err(_) => Some((Err(UpstreamError::Timeout), inner)),
            Ok(None) => None,
            Ok(Some(Ok(ev))) => Some((Ok(ev), inner)),
            Ok(Some(Err(eventsource_stream::EventStreamError::Transport(e)))) => Some((Err(e), inner)),
            Ok(Some(Err(e))) => Some((Err(UpstreamError::Protocol(format!("bad event stream: {e}"))), inner)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_boundaries() {
        assert_eq!(last_boundary(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(last_boundary(b"data: a"), None);
        assert_eq!(last_boundary(b"x\r\n\r\n"), Some(5));
    }
}
