//! A streaming HTTP body fed from a channel: request uploads and response result streams.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::mpsc;

/// Error carried by a [`ChannelBody`] (the producer gave up).
pub type BodyError = std::io::Error;

/// A body whose frames (data, then optionally trailers) come from a bounded channel, so the
/// producer is slowed down when the peer reads slowly.
#[derive(Debug)]
pub struct ChannelBody {
    /// `None`: known empty, so hyper ends the stream with the headers (a gRPC trailers-only
    /// answer needs that: a status in headers and then an empty DATA frame is no status to
    /// grpc-go).
    rx: Option<mpsc::Receiver<Result<Frame<Bytes>, BodyError>>>,
}

impl ChannelBody {
    /// A body and the sender that feeds it; `depth` frames are buffered.
    pub fn channel(depth: usize) -> (mpsc::Sender<Result<Frame<Bytes>, BodyError>>, ChannelBody) {
        let (tx, rx) = mpsc::channel(depth);
        (tx, ChannelBody { rx: Some(rx) })
    }

    /// A body holding one buffer.
    pub fn full(data: Bytes) -> ChannelBody {
        let (tx, body) = ChannelBody::channel(1);
        let _ = tx.try_send(Ok(Frame::data(data)));
        body
    }

    /// An empty body.
    pub fn empty() -> ChannelBody {
        ChannelBody { rx: None }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.rx.as_mut() {
            Some(rx) => rx.poll_recv(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rx.is_none()
    }
}
