//! The physical floor of a relay like the proxy: accept plaintext, open mutual TLS to the
//! broker, copy bytes both ways (tokio + rustls, read → write, no parsing). Same runtime
//! (tokio multi-thread, default workers), allocator (mimalloc), TLS library and provider
//! (rustls, aws-lc-rs, default resumption) and buffer sizes as the proxy.
//!
//!   floor --listen 127.0.0.1:23300 --upstream 127.0.0.1:23001 --ca CA --cert CERT --key KEY
//!         [--server-name 127.0.0.1] [--buffer 65536]

use std::sync::Arc;

use ktp_ceiling::args::Args;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn run(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.req("listen")).await?;
    let upstream = args.req("upstream");
    let name = ServerName::try_from(args.get("server-name", "127.0.0.1".to_owned()))?;
    let buffer: usize = args.get("buffer", 64 * 1024);
    let config =
        ktp_ceiling::tls::client_config(&args.req("ca"), &args.req("cert"), &args.req("key"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    eprintln!("floor: {} -> {upstream} (TLS)", listener.local_addr()?);
    loop {
        let (client, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("floor: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let (upstream, connector, name) = (upstream.clone(), connector.clone(), name.clone());
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let tcp = match TcpStream::connect(&upstream).await {
                Ok(t) => t,
                Err(_) => return,
            };
            let _ = tcp.set_nodelay(true);
            let Ok(tls) = connector.connect(name, tcp).await else {
                return;
            };
            let mut client = client;
            let mut tls = tls;
            let _ = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut tls, buffer, buffer)
                .await;
        });
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}
