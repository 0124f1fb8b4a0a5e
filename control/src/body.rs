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
    rx: mpsc::Receiver<Result<Frame<Bytes>, BodyError>>,
}

impl ChannelBody {
    /// A body and the sender that feeds it; `depth` frames are buffered.
    pub fn channel(depth: usize) -> (mpsc::Sender<Result<Frame<Bytes>, BodyError>>, ChannelBody) {
        let (tx, rx) = mpsc::channel(depth);
        (tx, ChannelBody { rx })
    }

    /// A body holding one buffer.
    pub fn full(data: Bytes) -> ChannelBody {
        let (tx, body) = ChannelBody::channel(1);
        let _ = tx.try_send(Ok(Frame::data(data)));
        body
    }

    /// An empty body.
    pub fn empty() -> ChannelBody {
        ChannelBody::channel(1).1
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.rx.poll_recv(cx)
    }
}
