//! The webhook shim's way to this process's own gRPC services: an in-memory
//! duplex pipe per connection instead of loopback TCP. Still real gRPC (the
//! SDK, HTTP/2, authentication, the per-RPC span and log line), without two
//! sockets, their syscalls and wake-ups per request.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf},
    sync::mpsc,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri, server::Connected};

/// Bytes buffered each way in one pipe.
const PIPE_BUFFER: usize = 256 * 1024;

/// The server's end of one in-process connection.
#[derive(Debug)]
pub struct Pipe(DuplexStream);

impl Connected for Pipe {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Pipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Connections accepted by the in-process server.
pub type Incoming = ReceiverStream<Result<Pipe, io::Error>>;

/// `n` lazily connecting channels (one HTTP/2 connection each) and the
/// stream of the connections they open, to be served with the same routes
/// as the TCP listener.
pub fn channels(n: usize, timeout: Duration) -> (Vec<Channel>, Incoming) {
    let (accept, incoming) = mpsc::channel(8);
    let channels = (0..n.max(1))
        .map(|_| {
            let accept = accept.clone();
            let connector = tower::service_fn(move |_: Uri| {
                let accept = accept.clone();
                async move {
                    let (client, server) = tokio::io::duplex(PIPE_BUFFER);
                    accept
                        .send(Ok(Pipe(server)))
                        .await
                        .map_err(|_| io::Error::other("the in-process gRPC server has stopped"))?;
                    Ok::<_, io::Error>(TokioIo::new(client))
                }
            });
            Endpoint::from_static("http://in-process.centralino.invalid")
                .timeout(timeout)
                .connect_with_connector_lazy(connector)
        })
        .collect();
    (channels, ReceiverStream::new(incoming))
}
