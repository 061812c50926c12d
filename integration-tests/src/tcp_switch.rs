//! A TCP forwarder that can be switched off: a test stand-in for a server that becomes unreachable.
//! While off, its port refuses connections (the listener is closed) and the connections it carried
//! are cut; switched on again, it listens on the same port. Clients reach it through their endpoint
//! override, like any server.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running switchable forwarder; see the module documentation.
pub struct TcpSwitch {
    /// `http://127.0.0.1:PORT`, the address to give clients.
    pub url: String,
    addr: SocketAddr,
    target: String,
    running: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
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
        };
        switch.serve(listener);
        switch
    }

    fn serve(&self, listener: TcpListener) {
        let token = CancellationToken::new();
        let target = self.target.clone();
        let t = token.clone();
        let task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = t.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((mut inbound, _)) = accepted else {
                    continue;
                };
                let target = target.clone();
                let t = t.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = t.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        *self.running.lock().unwrap() = Some((token, task));
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
