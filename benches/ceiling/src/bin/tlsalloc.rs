//! How many heap allocations tokio-rustls makes per TLS record in steady state, each way, as
//! the proxy uses it (rustls 0.23 buffered API, aws-lc-rs): a client connection over loopback
//! encrypts (the produce direction: the proxy towards a broker) or decrypts (the fetch
//! direction) while a counting allocator counts only the client's thread.
//!
//!   tlsalloc --ca CA --cert CERT --key KEY --server-cert C --server-key K [--mib 64] [--chunk 65536]
//!
//! Prints one JSON line: allocations and bytes per record and per MiB each way.

use std::alloc::System;
use std::sync::Arc;
use std::time::Instant;

use ktp_ceiling::alloc::{self, Counting};
use ktp_ceiling::args::Args;
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: Counting<System> = Counting(System);

const RECORD: usize = 16 * 1024;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mib: usize = args.get("mib", 64);
    let chunk: usize = args.get("chunk", 64 * 1024);
    let server = Arc::new(ktp_ceiling::tls::server_config(
        &args.req("server-cert"),
        &args.req("server-key"),
        &args.req("ca"),
        true,
    )?);
    let client = Arc::new(ktp_ceiling::tls::client_config(
        &args.req("ca"),
        &args.req("cert"),
        &args.req("key"),
    )?);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let total = mib << 20;

    // The server: for "write", reads raw (still encrypted) bytes and drops them; for "read",
    // sends `total` bytes of plaintext through TLS. Its thread is not counted.
    let srv = std::thread::spawn(move || {
        rt().block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(server);
            for direction in ["write", "read"] {
                let (tcp, _) = listener.accept().await.unwrap();
                let tls = acceptor.accept(tcp).await.unwrap();
                if direction == "write" {
                    let (mut raw, _) = tls.into_inner();
                    let mut buf = vec![0u8; 256 * 1024];
                    while raw.read(&mut buf).await.unwrap_or(0) > 0 {}
                } else {
                    let mut tls = tls;
                    let data = vec![0x62u8; chunk];
                    let mut sent = 0;
                    // Twice the measured amount: the first half is the warm-up.
                    while sent < 2 * total + chunk {
                        if tls.write_all(&data).await.is_err() {
                            break;
                        }
                        sent += chunk;
                    }
                    let _ = tls.shutdown().await;
                }
            }
        })
    });

    let result = rt().block_on(async move {
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut out = serde_json::Map::new();

        // Produce direction: encrypt.
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
        let data = vec![0x61u8; chunk];
        for _ in 0..(total / chunk) {
            tls.write_all(&data).await.unwrap();
        }
        tls.flush().await.unwrap();
        alloc::set_counting(true);
        let (a0, b0) = alloc::snapshot();
        let t = Instant::now();
        for _ in 0..(total / chunk) {
            tls.write_all(&data).await.unwrap();
        }
        tls.flush().await.unwrap();
        let secs = t.elapsed().as_secs_f64();
        let (a1, b1) = alloc::snapshot();
        alloc::set_counting(false);
        let records = (total / RECORD) as f64;
        out.insert(
            "encrypt".into(),
            json!({"bytes": total, "records": records, "allocations": a1 - a0,
                   "allocated_bytes": b1 - b0,
                   "allocations_per_record": (a1 - a0) as f64 / records,
                   "allocated_bytes_per_record": (b1 - b0) as f64 / records,
                   "seconds": secs, "gb_per_s": total as f64 / secs / 1e9}),
        );
        drop(tls);

        // Fetch direction: decrypt.
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        while got < total {
            got += tls.read(&mut buf).await.unwrap();
        }
        alloc::set_counting(true);
        let (a0, b0) = alloc::snapshot();
        let t = Instant::now();
        let start = got;
        while got < start + total {
            let n = tls.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        let secs = t.elapsed().as_secs_f64();
        let (a1, b1) = alloc::snapshot();
        alloc::set_counting(false);
        let read = (got - start) as f64;
        let records = read / RECORD as f64;
        out.insert(
            "decrypt".into(),
            json!({"bytes": read, "records": records, "allocations": a1 - a0,
                   "allocated_bytes": b1 - b0,
                   "allocations_per_record": (a1 - a0) as f64 / records,
                   "allocated_bytes_per_record": (b1 - b0) as f64 / records,
                   "seconds": secs, "gb_per_s": read / secs / 1e9}),
        );
        // Drain so the server finishes.
        while tls.read(&mut buf).await.unwrap_or(0) > 0 {}
        serde_json::Value::Object(out)
    });
    let _ = srv.join();
    println!("{result}");
    Ok(())
}
