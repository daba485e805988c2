//! A TCP relay that can be cut and restored, to take a real service (the database) away from a
//! gateway and give it back, as a network partition or a restart of that service would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Relays connections from its own address to `target` until cut.
pub struct Cuttable {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    /// Bumped on every cut: open relays end when it changes.
    generation: watch::Sender<u64>,
}

impl Cuttable {
    pub async fn start(target: SocketAddr) -> Cuttable {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let (c, g) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    // Refused: the connection is closed at once, as by a host that is down.
                    drop(client);
                    continue;
                }
                let mut ended = g.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = ended.changed() => {}
                    }
                });
            }
        });
        Cuttable { addr, cut, generation }
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// `url` (`postgres://user@host:port/db?…`) with its host and port replaced by `addr`, and the
/// address it named.
pub fn through(url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (auth, tail) = match rest.split_once('@') {
        Some((a, t)) => (format!("{a}@"), t),
        None => (String::new(), rest),
    };
    let end = tail.find(['/', '?']).unwrap_or(tail.len());
    let host = &tail[..end];
    let target: SocketAddr = if host.contains(':') {
        host.replace("localhost", "127.0.0.1").parse().expect("host:port")
    } else {
        format!("{}:5432", host.replace("localhost", "127.0.0.1"))
            .parse()
            .expect("host")
    };
    (format!("{scheme}://{auth}{addr}{}", &tail[end..]), target)
}
