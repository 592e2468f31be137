//! The ceiling's load generator: many connections, pipelined Produce or Fetch requests of a
//! chosen frame size, plaintext (to a relay) or mutual TLS (straight to the fake broker).
//! Prints one JSON line of results.
//!
//!   load produce|fetch --target HOST:PORT [--conns 16] [--depth 8] [--frame 16KiB]
//!        [--seconds 5] [--warmup 1] [--rate REQ_PER_S] [--cpu-pid PID]... [--relay-cpu 1]
//!   load churn --target HOST:PORT [--conns 4] [--seconds 5] [--warmup 1] [--cpu-pid PID]...
//!   load idle  --target HOST:PORT --count N [--send-one] [--settle 3] [--hold] [--cpu-pid PID]...
//!
//! TLS to the target: --tls --ca CA --cert CERT --key KEY [--server-name 127.0.0.1].
//! produce/fetch: --rate spreads that many requests a second over the connections on a fixed
//! schedule and times each from its scheduled send (no coordinated omission); without it,
//! every connection keeps --depth requests in flight. Latencies are recorded in both cases.
//! Throughput counts request frame bytes (produce) or response frame bytes (fetch), prefix
//! included, of requests answered inside the measured window.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::BufRead;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use ktp_ceiling::args::{parse_size, Args};
use ktp_ceiling::procfs;
use ktp_ceiling::proto;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

#[derive(Clone)]
struct Target {
    addr: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl Target {
    fn from(args: &Args) -> anyhow::Result<Self> {
        let tls = if args.flag("tls") {
            let config = ktp_ceiling::tls::client_config(
                &args.req("ca"),
                &args.req("cert"),
                &args.req("key"),
            )?;
            let name = ServerName::try_from(args.get("server-name", "127.0.0.1".to_owned()))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            addr: args.req("target"),
            tls,
        })
    }

    async fn connect(&self) -> std::io::Result<Box<dyn Io>> {
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, name)) => Ok(Box::new(connector.connect(name.clone(), tcp).await?)),
        }
    }
}

/// CPU and memory of the processes to watch, and of the machine, at one instant.
struct Snapshot {
    at: Instant,
    cpu: Vec<(u32, f64)>,
    machine: (u64, u64),
    interrupts: u64,
    relay_core: (u64, u64),
}

fn snapshot(pids: &[u32], relay_core: usize) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        cpu: pids
            .iter()
            .map(|&p| (p, procfs::cpu_seconds(p).unwrap_or(f64::NAN)))
            .collect(),
        machine: procfs::machine_jiffies(),
        interrupts: procfs::interrupt_jiffies(),
        relay_core: procfs::cpu_jiffies(relay_core),
    }
}

fn window(a: &Snapshot, b: &Snapshot) -> Value {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    let cpu: serde_json::Map<String, Value> = a
        .cpu
        .iter()
        .zip(&b.cpu)
        .map(|((p, x), (_, y))| (p.to_string(), json!(y - x)))
        .collect();
    let rss: serde_json::Map<String, Value> = a
        .cpu
        .iter()
        .map(|(p, _)| (p.to_string(), json!(procfs::rss_bytes(*p))))
        .collect();
    let busy = |x: (u64, u64), y: (u64, u64)| (y.0 - x.0) as f64 / ((y.1 - x.1).max(1)) as f64;
    json!({
        "seconds": secs,
        "cpu_s": cpu,
        "rss": rss,
        "machine_busy_cores": busy(a.machine, b.machine) * std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) as f64,
        "machine_busy_jiffies": b.machine.0 - a.machine.0,
        "interrupt_jiffies": b.interrupts - a.interrupts,
        "relay_core_busy": busy(a.relay_core, b.relay_core),
    })
}

fn pids(args: &Args) -> Vec<u32> {
    let mut p: Vec<u32> = args
        .all("cpu-pid")
        .iter()
        .map(|s| s.parse().expect("pid"))
        .collect();
    p.push(std::process::id());
    p
}

fn percentiles(mut v: Vec<u32>) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_unstable();
    let q = |f: f64| v[((v.len() as f64 - 1.0) * f).round() as usize];
    json!({"n": v.len(), "p50_us": q(0.5), "p90_us": q(0.9), "p99_us": q(0.99),
           "p999_us": q(0.999), "max_us": v[v.len() - 1]})
}

/// Shared between the connections of one run (one thread: Cell and RefCell suffice).
struct Run {
    measuring: Cell<bool>,
    stop: Cell<bool>,
    requests: Cell<u64>,
    req_bytes: Cell<u64>,
    resp_bytes: Cell<u64>,
    latencies: RefCell<Vec<u32>>,
    errors: Cell<u64>,
    late_us: Cell<u64>,
}

struct Load {
    template: Bytes,
    depth: usize,
    /// Per-connection interval between scheduled sends, when rate-limited.
    interval: Option<Duration>,
}

async fn pump(run: Rc<Run>, load: Rc<Load>, stream: Box<dyn Io>, offset: Duration) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let sent: Rc<RefCell<VecDeque<Instant>>> = Rc::default();
    let inflight = Rc::new(Cell::new(0usize));
    let wake = Rc::new(Notify::new());
    let frame_len = load.template.len();
    let batch_max = if frame_len >= 64 * 1024 {
        1
    } else {
        load.depth
    };
    let writer = {
        let (run, load, sent, inflight, wake) = (
            run.clone(),
            load.clone(),
            sent.clone(),
            inflight.clone(),
            wake.clone(),
        );
        async move {
            let mut batch = BytesMut::with_capacity(frame_len * batch_max);
            for _ in 0..batch_max {
                batch.extend_from_slice(&load.template);
            }
            let mut id: i32 = 0;
            let mut next = Instant::now() + offset;
            while !run.stop.get() {
                while inflight.get() >= load.depth && !run.stop.get() {
                    wake.notified().await;
                }
                if run.stop.get() {
                    break;
                }
                let k = match load.interval {
                    Some(iv) => {
                        // Paced: send what is due (tokio's timer ticks every millisecond, so
                        // at high rates a few are due at once), timed from the write.
                        let now = Instant::now();
                        if next > now {
                            tokio::time::sleep_until(next.into()).await;
                        }
                        let now = Instant::now();
                        let due = 1 + ((now - next).as_nanos() / iv.as_nanos().max(1)) as usize;
                        let k = due.min(load.depth - inflight.get()).min(batch_max).max(1);
                        if run.measuring.get() && due > k {
                            run.late_us.set(
                                run.late_us.get() + ((due - k) as u64) * iv.as_micros() as u64,
                            );
                        }
                        next += iv * k as u32;
                        k
                    }
                    None => (load.depth - inflight.get()).min(batch_max),
                };
                let stamp = Instant::now();
                for i in 0..k {
                    proto::set_request_correlation_id(
                        &mut batch[i * frame_len..(i + 1) * frame_len],
                        id,
                    );
                    id = id.wrapping_add(1);
                    sent.borrow_mut().push_back(stamp);
                }
                inflight.set(inflight.get() + k);
                if wr.write_all(&batch[..k * frame_len]).await.is_err() {
                    run.errors.set(run.errors.get() + 1);
                    return;
                }
            }
        }
    };
    let reader = {
        let run = run.clone();
        async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            loop {
                let want = proto::announced_frame(&buf)
                    .map(|n| n.saturating_sub(buf.len()))
                    .unwrap_or(0)
                    .max(64 * 1024);
                buf.reserve(want);
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => {
                        if !run.stop.get() {
                            run.errors.set(run.errors.get() + 1);
                        }
                        return;
                    }
                    Ok(_) => {}
                }
                let now = Instant::now();
                while let Some(len) = proto::complete_frame(&buf) {
                    buf.advance(len);
                    let Some(t) = sent.borrow_mut().pop_front() else {
                        run.errors.set(run.errors.get() + 1);
                        return;
                    };
                    inflight.set(inflight.get() - 1);
                    if run.measuring.get() {
                        run.requests.set(run.requests.get() + 1);
                        run.req_bytes.set(run.req_bytes.get() + frame_len as u64);
                        run.resp_bytes.set(run.resp_bytes.get() + len as u64);
                        run.latencies
                            .borrow_mut()
                            .push(now.saturating_duration_since(t).as_micros() as u32);
                    }
                }
                wake.notify_one();
            }
        }
    };
    tokio::join!(writer, reader);
}

async fn connect_all(target: &Target, n: usize, concurrency: usize) -> (Vec<Box<dyn Io>>, usize) {
    let sem = Arc::new(Semaphore::new(concurrency));
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await.expect("open");
        let target = target.clone();
        handles.push(tokio::task::spawn_local(async move {
            let r = target.connect().await;
            drop(permit);
            r
        }));
    }
    let mut ok = Vec::with_capacity(n);
    let mut failed = 0;
    for h in handles {
        match h.await {
            Ok(Ok(s)) => ok.push(s),
            _ => failed += 1,
        }
    }
    (ok, failed)
}

async fn prime(
    streams: Vec<Box<dyn Io>>,
    request: Bytes,
    concurrency: usize,
) -> (Vec<Box<dyn Io>>, usize) {
    let sem = Arc::new(Semaphore::new(concurrency));
    let mut handles = Vec::with_capacity(streams.len());
    for mut s in streams {
        let permit = sem.clone().acquire_owned().await.expect("open");
        let request = request.clone();
        handles.push(tokio::task::spawn_local(async move {
            let r = async {
                s.write_all(&request).await?;
                s.flush().await?;
                let mut buf = BytesMut::with_capacity(64 * 1024);
                loop {
                    if proto::complete_frame(&buf).is_some() {
                        break;
                    }
                    let want = proto::announced_frame(&buf)
                        .map(|n| n.saturating_sub(buf.len()))
                        .unwrap_or(0)
                        .max(64 * 1024);
                    buf.reserve(want);
                    if s.read_buf(&mut buf).await? == 0 {
                        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                    }
                }
                Ok(s)
            }
            .await;
            drop(permit);
            r
        }));
    }
    let mut ok = Vec::with_capacity(handles.len());
    let mut failed = 0;
    for h in handles {
        match h.await {
            Ok(Ok(s)) => ok.push(s),
            _ => failed += 1,
        }
    }
    (ok, failed)
}

async fn traffic(args: Args, fetch: bool) -> anyhow::Result<Value> {
    let target = Target::from(&args)?;
    let conns: usize = args.get("conns", 16);
    let depth: usize = args.get("depth", 8);
    let frame = parse_size(&args.get("frame", "16KiB".to_owned()));
    let seconds: f64 = args.get("seconds", 5.0);
    let warmup: f64 = args.get("warmup", 1.0);
    let rate: f64 = args.get("rate", 0.0);
    let relay_core: usize = args.get("relay-cpu", 1);
    let template = if fetch {
        proto::fetch_request(args.get("fetch-version", 17), frame)
    } else {
        proto::produce_request(args.get("produce-version", 11), frame, args.get("acks", 1))
    };
    let interval = (rate > 0.0).then(|| Duration::from_secs_f64(conns as f64 / rate));
    let load = Rc::new(Load {
        template,
        depth: if rate > 0.0 { depth.max(64) } else { depth },
        interval,
    });
    let run = Rc::new(Run {
        measuring: Cell::new(false),
        stop: Cell::new(false),
        requests: Cell::new(0),
        req_bytes: Cell::new(0),
        resp_bytes: Cell::new(0),
        latencies: RefCell::default(),
        errors: Cell::new(0),
        late_us: Cell::new(0),
    });
    let t0 = Instant::now();
    let (streams, failed) = connect_all(&target, conns, args.get("connect-concurrency", 256)).await;
    let connect_s = t0.elapsed().as_secs_f64();
    if streams.is_empty() {
        anyhow::bail!("no connection to {} could be opened", target.addr);
    }
    // One round trip on every connection first, so that a relay that connects upstream lazily
    // (or slowly) has every upstream connection open before the warm-up.
    let t1 = Instant::now();
    let (streams, prime_failed) = prime(
        streams,
        load.template.clone(),
        args.get("connect-concurrency", 256),
    )
    .await;
    let prime_s = t1.elapsed().as_secs_f64();
    if streams.is_empty() {
        anyhow::bail!(
            "no connection to {} answered its first request",
            target.addr
        );
    }
    let opened = streams.len();
    let mut tasks = Vec::new();
    for (i, s) in streams.into_iter().enumerate() {
        let offset = interval
            .map(|iv| iv.mul_f64(i as f64 / opened as f64))
            .unwrap_or_default();
        tasks.push(tokio::task::spawn_local(pump(
            run.clone(),
            load.clone(),
            s,
            offset,
        )));
    }
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    let pids = pids(&args);
    let a = snapshot(&pids, relay_core);
    run.measuring.set(true);
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    run.measuring.set(false);
    let b = snapshot(&pids, relay_core);
    run.stop.set(true);
    drop(tasks); // the connections close when the process ends
    let w = window(&a, &b);
    let secs = w["seconds"].as_f64().unwrap_or(seconds);
    let bytes = if fetch {
        run.resp_bytes.get()
    } else {
        run.req_bytes.get()
    };
    Ok(json!({
        "mode": if fetch { "fetch" } else { "produce" },
        "target": target.addr, "tls": target.tls.is_some(),
        "conns": opened, "connect_failed": failed, "connect_s": connect_s,
        "prime_failed": prime_failed, "prime_s": prime_s,
        "depth": load.depth, "frame_bytes": load.template.len(), "rate": rate,
        "requests": run.requests.get(), "bytes": bytes,
        "req_bytes": run.req_bytes.get(), "resp_bytes": run.resp_bytes.get(),
        "gb_per_s": bytes as f64 / secs / 1e9,
        "req_per_s": run.requests.get() as f64 / secs,
        "errors": run.errors.get(),
        "late_ms_total": run.late_us.get() as f64 / 1000.0,
        "latency": percentiles(std::mem::take(&mut *run.latencies.borrow_mut())),
        "window": w,
    }))
}

async fn churn(args: Args) -> anyhow::Result<Value> {
    let target = Target::from(&args)?;
    let conns: usize = args.get("conns", 4);
    let seconds: f64 = args.get("seconds", 5.0);
    let warmup: f64 = args.get("warmup", 1.0);
    let relay_core: usize = args.get("relay-cpu", 1);
    let request = proto::api_versions_request(3);
    let run = Rc::new(Run {
        measuring: Cell::new(false),
        stop: Cell::new(false),
        requests: Cell::new(0),
        req_bytes: Cell::new(0),
        resp_bytes: Cell::new(0),
        latencies: RefCell::default(),
        errors: Cell::new(0),
        late_us: Cell::new(0),
    });
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (run, target, request) = (run.clone(), target.clone(), request.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut buf = BytesMut::with_capacity(4096);
            while !run.stop.get() {
                let t = Instant::now();
                let ok = async {
                    let mut s = target.connect().await?;
                    s.write_all(&request).await?;
                    s.flush().await?;
                    buf.clear();
                    while proto::complete_frame(&buf).is_none() {
                        buf.reserve(4096);
                        if s.read_buf(&mut buf).await? == 0 {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    let _ = s.shutdown().await;
                    Ok::<_, std::io::Error>(())
                }
                .await;
                match ok {
                    Ok(()) if run.measuring.get() => {
                        run.requests.set(run.requests.get() + 1);
                        run.latencies
                            .borrow_mut()
                            .push(t.elapsed().as_micros() as u32);
                    }
                    Ok(()) => {}
                    Err(_) => {
                        run.errors.set(run.errors.get() + 1);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    let pids = pids(&args);
    let a = snapshot(&pids, relay_core);
    run.measuring.set(true);
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    run.measuring.set(false);
    let b = snapshot(&pids, relay_core);
    run.stop.set(true);
    drop(tasks);
    let w = window(&a, &b);
    let secs = w["seconds"].as_f64().unwrap_or(seconds);
    Ok(json!({
        "mode": "churn", "target": target.addr, "tls": target.tls.is_some(), "conns": conns,
        "connections": run.requests.get(), "per_second": run.requests.get() as f64 / secs,
        "errors": run.errors.get(),
        "latency": percentiles(std::mem::take(&mut *run.latencies.borrow_mut())),
        "window": w,
    }))
}

async fn idle(args: Args) -> anyhow::Result<Value> {
    let target = Target::from(&args)?;
    let count: usize = args.get("count", 1000);
    let send_one = args.flag("send-one");
    let settle: f64 = args.get("settle", 3.0);
    let concurrency: usize = args.get("connect-concurrency", 200);
    let watch: Vec<u32> = pids(&args)
        .into_iter()
        .filter(|&p| p != std::process::id())
        .collect();
    let rss = |p: &[u32]| -> Vec<Option<u64>> { p.iter().map(|&p| procfs::rss_bytes(p)).collect() };
    let thr = |p: &[u32]| -> Vec<Option<usize>> { p.iter().map(|&p| procfs::threads(p)).collect() };
    let rss_before = rss(&watch);
    let threads_before = thr(&watch);
    let cpu_before: Vec<f64> = watch
        .iter()
        .map(|&p| procfs::cpu_seconds(p).unwrap_or(0.0))
        .collect();
    // The most threads each watched process had while the connections opened (helper threads,
    // e.g. a blocking pool for name resolution).
    let max_threads: Arc<Vec<std::sync::atomic::AtomicUsize>> =
        Arc::new(watch.iter().map(|_| Default::default()).collect());
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (max_threads, sampling, watch) = (max_threads.clone(), sampling.clone(), watch.clone());
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                for (i, &p) in watch.iter().enumerate() {
                    if let Some(n) = procfs::threads(p) {
                        max_threads[i].fetch_max(n, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let t0 = Instant::now();
    let request = proto::api_versions_request(3);
    let sem = Arc::new(Semaphore::new(concurrency));
    let mut handles = Vec::with_capacity(count);
    for _ in 0..count {
        let permit = sem.clone().acquire_owned().await.expect("open");
        let (target, request) = (target.clone(), request.clone());
        handles.push(tokio::task::spawn_local(async move {
            let r = async {
                let mut s = target.connect().await?;
                if send_one {
                    s.write_all(&request).await?;
                    s.flush().await?;
                    let mut buf = BytesMut::with_capacity(1024);
                    while proto::complete_frame(&buf).is_none() {
                        buf.reserve(1024);
                        if s.read_buf(&mut buf).await? == 0 {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                }
                Ok::<_, std::io::Error>(s)
            }
            .await;
            drop(permit);
            r
        }));
    }
    let mut held = Vec::with_capacity(count);
    let mut failed = 0usize;
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let open_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(settle)).await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    let rss_after = rss(&watch);
    let threads_after = thr(&watch);
    let cpu_after: Vec<f64> = watch
        .iter()
        .map(|&p| procfs::cpu_seconds(p).unwrap_or(0.0))
        .collect();
    let per_pid: serde_json::Map<String, Value> = watch
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (b, a) = (rss_before[i].unwrap_or(0), rss_after[i].unwrap_or(0));
            (
                p.to_string(),
                json!({
                    "rss_before": b, "rss_after": a,
                    "bytes_per_connection": if held.is_empty() { Value::Null } else {
                        json!((a as f64 - b as f64) / held.len() as f64) },
                    "threads_before": threads_before[i], "threads_after": threads_after[i],
                    "threads_max": max_threads[i].load(std::sync::atomic::Ordering::Relaxed),
                    "cpu_s": cpu_after[i] - cpu_before[i],
                }),
            )
        })
        .collect();
    let result = json!({
        "mode": "idle", "target": target.addr, "send_one": send_one, "requested": count,
        "connections": held.len(), "failed": failed, "first_error": first_error,
        "open_s": open_s, "settle_s": settle, "pids": per_pid,
    });
    if args.flag("hold") {
        // The caller reads the line, looks around (broker counters, RSS later), then closes
        // our stdin to let the connections go.
        println!("{result}");
        let _ = tokio::task::spawn_blocking(|| {
            let stdin = std::io::stdin();
            for _ in stdin.lock().lines() {}
        })
        .await;
        drop(held);
        return Ok(Value::Null);
    }
    drop(held);
    Ok(result)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let mode = args.mode.clone();
    let out = local.block_on(&rt, async move {
        match mode.as_str() {
            "produce" => traffic(args, false).await,
            "fetch" => traffic(args, true).await,
            "churn" => churn(args).await,
            "idle" => idle(args).await,
            m => anyhow::bail!("unknown mode '{m}' (produce, fetch, churn, idle)"),
        }
    })?;
    if !out.is_null() {
        println!("{out}");
    }
    // Open connections and their tasks go with the process.
    std::process::exit(0)
}
