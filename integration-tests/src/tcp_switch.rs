//! A TCP forwarder that can be switched off: a test stand-in for a server that becomes unreachable.
//! While off, its port refuses connections (the listener is closed) and the connections it carried
//! are cut; switched on again, it listens on the same port. It can also **blackhole**: connections are
//! accepted and held, and nothing is forwarded either way (a route that silently drops packets, the
//! hardest failure for a client: no error, only silence) until it forwards again. Clients reach it
//! through their endpoint override, like any server.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running switchable forwarder; see the module documentation.
pub struct TcpSwitch {
    /// `http://127.0.0.1:PORT`, the address to give clients.
    pub url: String,
    addr: SocketAddr,
    target: String,
    running: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
    blackholed: watch::Sender<bool>,
}

impl TcpSwitch {
    /// Starts forwarding a free port of 127.0.0.1 to `target` (`http://host:port`).
    pub async fn start(target: &str) -> Self {
        let target = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let switch = Self {
            url: format!("http://{addr}"),
            addr,
            target,
            running: Mutex::new(None),
            blackholed: watch::channel(false).0,
        };
        switch.serve(listener);
        switch
    }

    fn serve(&self, listener: TcpListener) {
        let token = CancellationToken::new();
        let target = self.target.clone();
        let t = token.clone();
        let mode = self.blackholed.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = t.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((inbound, _)) = accepted else {
                    continue;
                };
                tokio::spawn(connection(inbound, target.clone(), t.clone(), mode.clone()));
            }
        });
        *self.running.lock().unwrap() = Some((token, task));
    }

    /// Starts blackholing: connections (open and new) are held and nothing is forwarded.
    pub fn blackhole(&self) {
        self.blackholed.send_replace(true);
    }

    /// Forwards again; connections held while blackholed are closed (clients reconnect).
    pub fn forward(&self) {
        self.blackholed.send_replace(false);
    }

    /// Switches off: closes the port and cuts every connection; returns once the port refuses.
    pub async fn off(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some((token, task)) = running {
            token.cancel();
            let _ = task.await;
        }
    }

    /// Switches on again, on the same port.
    pub async fn on(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

/// One accepted connection: forwarded while the switch forwards, held silently while it blackholes.
async fn connection(
    mut inbound: TcpStream,
    target: String,
    cancel: CancellationToken,
    mut blackholed: watch::Receiver<bool>,
) {
    if !*blackholed.borrow_and_update() {
        let Ok(mut outbound) = TcpStream::connect(&target).await else {
            return;
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
            _ = blackholed.wait_for(|b| *b) => {}
        }
    }
    // Blackholed: swallow whatever the client sends, answer nothing, until forwarding resumes.
    let mut sink = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = blackholed.wait_for(|b| !*b) => return,
            n = inbound.read(&mut sink) => match n {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}
