//! The listening socket: [`listen`].

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The length of the queue of connections the kernel holds until the server accepts them
/// (capped by the system's `net.core.somaxconn`).
///
/// Tokio's `TcpListener::bind` asks for 128, as the standard library does. A web page
/// opens its event stream as a sync starts, and a crowd of such pages (or every client
/// reconnecting after a restart) connects at once: past the queue's length the kernel drops
/// the new connection's first packet, and that client waits a whole second for TCP to send
/// it again. Two hundred event streams opened together cost some requests a second.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A socket listening on `addr` for the [`router`](crate::router), with a queue of
/// [`LISTEN_BACKLOG`] connections (address reuse on, as `TcpListener::bind` sets it).
///
/// ```no_run
/// # async fn serve(state: sync_server::AppState) -> std::io::Result<()> {
/// let listener = sync_server::listen("127.0.0.1:7341".parse().unwrap()).await?;
/// axum::serve(listener, sync_server::router(state)).await
/// # }
/// ```
pub async fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
