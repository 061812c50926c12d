//! A TLS front for a plain-HTTP local server: a test stand-in for a cluster serving HTTPS with a
//! certificate from a private CA (as Elasticsearch 8+ does out of the box). A fresh CA and a server
//! certificate for `localhost` / `127.0.0.1` are made at start; clients must be given the CA to connect.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};

/// A running TLS front.
pub struct TlsFront {
    /// `https://localhost:PORT`.
    pub url: String,
    /// The CA certificate (PEM) that signed the server's certificate.
    pub ca_pem: String,
}

impl TlsFront {
    /// Serves TLS on a free port of 127.0.0.1, forwarding the decrypted bytes to `target`
    /// (`http://host:port`).
    pub async fn start(target: &str) -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "kinesis-connectors test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(inbound).await else {
                        return;
                    };
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut outbound).await;
                });
            }
        });
        Self {
            url: format!("https://localhost:{port}"),
            ca_pem: ca.pem(),
        }
    }
}
