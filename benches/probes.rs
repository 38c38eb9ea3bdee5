//! fediprobe's benchmarks, side by side with blackbox_exporter where the question
//! applies to both. Every figure in `BENCHMARKS.md` comes from one of these:
//!
//! ```text
//! cargo build --release                        # the `fediprobe` binary (cold start, footprint)
//! cargo bench --bench probes -- accuracy       # reported duration − D, D = 0, 10, 100, 1000 ms
//! cargo bench --bench probes -- cost           # CPU and peak memory for 10 000 runs / probes
//! cargo bench --bench probes -- cold-start     # `fediprobe once`: exec → first request byte
//! cargo bench --bench probes -- slow-targets   # 10 000 runs in flight against a silent server
//! cargo bench --bench probes -- footprint      # `fediprobe run`, 1 000 journeys every minute
//! cargo bench --bench probes -- shipped        # the binaries as users run them, beside curl and blackbox_exporter
//! cargo bench --bench probes -- agent-start    # `fediprobe run` with 1 000 journeys: exec → /readyz
//! cargo bench --bench probes                   # all of the above
//! ```
//!
//! Everything targets 127.0.0.1 only, every loop is bounded, and the helper
//! servers (this same binary in a server mode, as a child process so that its CPU
//! is not counted) exit when the benchmark's end of their stdin closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fediprobe::runner::{Outcome, Reason, Runner, Target};
use fediprobe::secret::Secret;
use fediprobe::spec::{Journey, parse_journey_str};

/// The allocator the `fediprobe` binary ships with (mimalloc), counting the
/// bytes live on the heap: the slow-targets bench divides them by the runs in
/// flight (RSS also holds what the allocator keeps after a free, so it overstates
/// what a run holds), and its RSS figures are those of the shipped allocator.
struct Counting;

static HEAP_LIVE: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP_LIVE.fetch_add(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        HEAP_LIVE.fetch_sub(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        HEAP_LIVE.fetch_add(new_size as isize - layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn heap_live() -> isize {
    HEAP_LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

const DELAYS_MS: [u64; 4] = [0, 10, 100, 1000];
const COST_RUNS: usize = 10_000;
const SLOW_RUNS: usize = 10_000;
const SLOW_DEADLINE: Duration = Duration::from_secs(2);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    match args.first().map(String::as_str) {
        // Helper modes, started by the benchmarks themselves.
        Some("serve-delay") => serve_delay(),
        Some("serve-silent") => serve_silent(),
        Some("runner-loop") => runner_loop(&args[1], args[2].parse().unwrap()),
        Some("slow-runs") => slow_runs(&args[1], args[2].parse().unwrap()),
        // Benchmarks.
        Some("accuracy") => accuracy(),
        Some("cost") => cost(),
        Some("cold-start") => cold_start(),
        Some("slow-targets") => slow_targets(),
        Some("footprint") => footprint(),
        Some("shipped") => shipped(),
        Some("agent-start") => agent_start(),
        None => {
            accuracy();
            cost();
            cold_start();
            slow_targets();
            footprint();
            shipped();
            agent_start();
        }
        Some(other) => {
            eprintln!(
                "unknown benchmark `{other}`: accuracy, cost, cold-start, slow-targets, footprint, shipped or agent-start"
            );
            std::process::exit(2);
        }
    }
}

// ---------------------------------------------------------------------------
// Helper servers (child processes).

/// Exits when the parent closes our stdin (or dies), so no server outlives its bench.
fn exit_with_parent() {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
}

/// HTTP/1.1 on 127.0.0.1: `GET /delay/D` answers `200 ok` exactly D ms after the
/// request head has been read (a thread per connection that sleeps until 1 ms
/// before and spins the rest, so that a busy machine's late wake-ups don't land
/// in the figures). Prints its port.
fn serve_delay() {
    exit_with_parent();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve_delay_connection(stream));
    }
}

fn serve_delay_connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
        }
        let read_at = Instant::now();
        let path = request_line.split(' ').nth(1).unwrap_or("/");
        let delay = path.strip_prefix("/delay/").and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
        let until = read_at + Duration::from_millis(delay);
        if let Some(left) = until.checked_duration_since(Instant::now() + Duration::from_millis(1)) {
            std::thread::sleep(left);
        }
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        let response = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
        if writer.write_all(response).is_err() {
            return;
        }
    }
}

/// Accepts connections and never answers (it reads and discards, so that a
/// connection the client closed is released). Prints its port.
fn serve_silent() {
    exit_with_parent();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(mode: &str) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the helper server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        Server { child, port: line.trim().parse().expect("the helper prints its port") }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// blackbox_exporter.

const BLACKBOX: &str = "/usr/bin/prometheus-blackbox-exporter";

struct Blackbox {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Blackbox {
    fn start() -> Blackbox {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("blackbox.yml");
        std::fs::write(
            &config,
            "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n",
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(BLACKBOX)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BLACKBOX} (apt-get install prometheus-blackbox-exporter): {e}"));
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "blackbox_exporter did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Blackbox { child, port, _dir: dir }
    }

    /// One probe of `target`: (probe_duration_seconds, sum of probe_http_duration_seconds).
    fn probe(&self, target: &str) -> (f64, f64) {
        let body = http_get(self.port, &format!("/probe?module=http_2xx&target={target}"));
        let mut duration = None;
        let mut phases = 0.0;
        let mut success = false;
        for line in body.lines() {
            if let Some(v) = line.strip_prefix("probe_duration_seconds ") {
                duration = v.parse().ok();
            } else if line.starts_with("probe_http_duration_seconds{") {
                phases += line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            } else if line == "probe_success 1" {
                success = true;
            }
        }
        assert!(success, "blackbox_exporter's probe failed:\n{body}");
        (duration.expect("probe_duration_seconds"), phases)
    }

    fn usage(&self) -> Usage {
        Usage::of(self.child.id())
    }
}

impl Drop for Blackbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking HTTP/1.0 GET on loopback, for talking to blackbox_exporter.
fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------
// Measuring processes.

/// CPU time and memory of a process, from /proc.
#[derive(Debug, Clone, Copy)]
struct Usage {
    cpu: Duration,
    rss_kib: u64,
    peak_rss_kib: u64,
}

impl Usage {
    fn of(pid: u32) -> Usage {
        Usage::from_proc(&format!("/proc/{pid}"))
    }

    fn own() -> Usage {
        Usage::from_proc("/proc/self")
    }

    fn from_proc(dir: &str) -> Usage {
        let stat = std::fs::read_to_string(format!("{dir}/stat")).unwrap();
        // Fields after the command name (which is in parentheses and may hold spaces).
        let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let status = std::fs::read_to_string(format!("{dir}/status")).unwrap();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        // USER_HZ is 100 on Linux.
        Usage { cpu: Duration::from_millis(ticks * 10), rss_kib: kib("VmRSS:"), peak_rss_kib: kib("VmHWM:") }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------
// Statistics.

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median_p99(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (quantile(&values, 0.5), quantile(&values, 0.99))
}

// ---------------------------------------------------------------------------
// fediprobe in this process.

fn one_request_journey(path: &str, deadline: Duration) -> Journey {
    let text = format!(
        "name: bench\ninstance: main\nschedule: '* * * * *'\ndeadline: {}ms\nslo: {{ availability: 99% }}\nsteps:\n  - name: get\n    timeout: 60s\n    request: {{ path: '{path}', auth: false }}\n",
        deadline.as_millis()
    );
    let (journey, diagnostics) = parse_journey_str(Path::new("bench.yaml"), &text);
    journey.unwrap_or_else(|| panic!("{diagnostics}"))
}

fn runner_for(base_url: &str) -> Runner {
    Runner::new(vec![Target::new("main", base_url.parse().unwrap(), "probe", Secret::new("unused"))])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

// ---------------------------------------------------------------------------
// Accuracy.

fn accuracy() {
    let server = Server::start("serve-delay");
    let blackbox = Blackbox::start();
    let runtime = runtime();
    let runner = runner_for(&server.url("/"));
    println!("\n## Accuracy: reported duration − D (ms), fediprobe and blackbox_exporter interleaved\n");
    println!(
        "| D | runs each | fediprobe journey median | fediprobe journey p99 | fediprobe `ttfb` − D median | blackbox `probe_duration_seconds` median | blackbox p99 | blackbox Σ`probe_http_duration_seconds` median | blackbox Σ p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for delay in DELAYS_MS {
        let runs = match delay {
            0 | 10 => 300,
            100 => 150,
            _ => 40,
        };
        let path = format!("/delay/{delay}");
        let journey = one_request_journey(&path, Duration::from_secs(60));
        let target = server.url(&path);
        let d = delay as f64;
        let (mut fp, mut fp_ttfb, mut bb, mut bb_phases) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Warm up both (page in code, first connections).
        for _ in 0..5 {
            runtime.block_on(runner.run(&journey));
            blackbox.probe(&target);
        }
        for _ in 0..runs {
            let result = runtime.block_on(runner.run(&journey));
            assert_eq!(result.outcome, Outcome::Success, "{result:?}");
            fp.push(result.duration.as_secs_f64() * 1e3 - d);
            fp_ttfb.push(result.steps[0].phases.unwrap().ttfb.as_secs_f64() * 1e3 - d);
            let (duration, phases) = blackbox.probe(&target);
            bb.push(duration * 1e3 - d);
            bb_phases.push(phases * 1e3 - d);
        }
        let (fp_m, fp_p) = median_p99(fp);
        let (ttfb_m, _) = median_p99(fp_ttfb);
        let (bb_m, bb_p) = median_p99(bb);
        let (bbp_m, bbp_p) = median_p99(bb_phases);
        println!(
            "| {delay} ms | {runs} | {fp_m:.3} | {fp_p:.3} | {ttfb_m:.3} | {bb_m:.3} | {bb_p:.3} | {bbp_m:.3} | {bbp_p:.3} |"
        );
    }
}

// ---------------------------------------------------------------------------
// Cost per run.

/// Child mode: `runs` sequential one-request runs (each turned into its samples,
/// as the agent does), then this process's CPU time and peak RSS on stdout.
fn runner_loop(base_url: &str, runs: usize) {
    let runtime = runtime();
    let runner = runner_for(base_url);
    let journey = one_request_journey("/delay/0", Duration::from_secs(60));
    let started = Instant::now();
    let mut samples = 0;
    for _ in 0..runs {
        let result = runtime.block_on(runner.run(&journey));
        assert_eq!(result.outcome, Outcome::Success, "{result:?}");
        samples += fediprobe::metrics::samples_for_run(&result, "bench").len();
    }
    let wall = started.elapsed();
    let usage = Usage::own();
    println!("{} {} {} {samples}", usage.cpu.as_secs_f64(), usage.peak_rss_kib, wall.as_secs_f64());
}

fn cost() {
    let server = Server::start("serve-delay");
    println!("\n## Cost per run: {COST_RUNS} sequential one-request runs against `/delay/0`\n");
    println!("| prober | CPU total | CPU per run | peak RSS | wall |");
    println!("|---|---|---|---|---|");

    let output = Command::new(std::env::current_exe().unwrap())
        .args(["runner-loop", &server.url("/"), &COST_RUNS.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let fields: Vec<f64> = text.split_whitespace().map(|v| v.parse().unwrap()).collect();
    let (cpu, peak_kib, wall) = (fields[0], fields[1] as u64, fields[2]);
    println!(
        "| fediprobe (runner in one process, samples made per run) | {cpu:.2} s | {:.0} µs | {:.1} MiB | {wall:.1} s |",
        cpu / COST_RUNS as f64 * 1e6,
        mib(peak_kib)
    );

    let blackbox = Blackbox::start();
    let target = server.url("/delay/0");
    for _ in 0..20 {
        blackbox.probe(&target);
    }
    let before = blackbox.usage();
    let started = Instant::now();
    for _ in 0..COST_RUNS {
        blackbox.probe(&target);
    }
    let wall = started.elapsed().as_secs_f64();
    let after = blackbox.usage();
    let cpu = (after.cpu - before.cpu).as_secs_f64();
    println!(
        "| blackbox_exporter (`/probe` {COST_RUNS} times) | {cpu:.2} s | {:.0} µs | {:.1} MiB | {wall:.1} s |",
        cpu / COST_RUNS as f64 * 1e6,
        mib(after.peak_rss_kib)
    );
}

// ---------------------------------------------------------------------------
// Cold start.

fn fediprobe_binary() -> PathBuf {
    if let Ok(path) = std::env::var("FEDIPROBE_BIN") {
        return PathBuf::from(path);
    }
    // target/release/deps/probes-… → target/release/fediprobe
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("fediprobe");
    assert!(path.exists(), "{} is missing: run `cargo build --release` first", path.display());
    path
}

/// A config for `fediprobe once`/`run` with `count` one-request journeys to `base_url`.
fn write_config(dir: &Path, base_url: &str, count: usize, path: &str) -> PathBuf {
    let journeys: Vec<(String, &str, String)> =
        (0..count).map(|i| (format!("j{i:04}"), "* * * * *", path.to_owned())).collect();
    write_config_with(dir, base_url, &journeys)
}

/// A config with one-request journeys `(name, schedule, path)` to `base_url`.
fn write_config_with(dir: &Path, base_url: &str, journeys: &[(String, &str, String)]) -> PathBuf {
    write_config_named(dir, base_url, journeys, "bench")
}

/// [`write_config_with`], for the probe named `probe`.
fn write_config_named(dir: &Path, base_url: &str, journeys: &[(String, &str, String)], probe: &str) -> PathBuf {
    let folder = dir.join("journeys");
    std::fs::create_dir_all(&folder).unwrap();
    for (name, schedule, path) in journeys {
        std::fs::write(
            folder.join(format!("{name}.yaml")),
            format!(
                "name: {name}\ninstance: main\nschedule: '{schedule}'\nslo: {{ availability: 99% }}\nsteps:\n  - name: get\n    request: {{ path: '{path}', auth: false }}\n"
            ),
        )
        .unwrap();
    }
    let config = dir.join("fediprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "probe:\n  region: bench\n  name: {probe}\ninstances:\n  main:\n    url: {base_url}\n    account: probe\n    token: {{ env: FEDIPROBE_BENCH_TOKEN }}\njourneys: [journeys]\n"
        ),
    )
    .unwrap();
    config
}

fn cold_start() {
    const RUNS: usize = 50;
    let binary = fediprobe_binary();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &format!("http://127.0.0.1:{port}"), 1, "/cold");
    // Answers each connection's request once; reports when its first byte came.
    let (first_byte, arrived) = std::sync::mpsc::channel::<Instant>();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            if stream.read(&mut buf).unwrap_or(0) > 0 {
                let _ = first_byte.send(Instant::now());
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            }
        }
    });
    let mut times = Vec::new();
    for _ in 0..RUNS + 3 {
        // Requests of the previous run that came after its first (the leftover
        // sweep after the measurement) are not this run's first byte.
        while arrived.try_recv().is_ok() {}
        let started = Instant::now();
        let status = Command::new(&binary)
            .args(["once", "-c"])
            .arg(&config)
            .args(["--output", "json"])
            .env("FEDIPROBE_BENCH_TOKEN", "unused")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = arrived.recv_timeout(Duration::from_secs(10)).expect("fediprobe once sent a request");
        times.push((at - started).as_secs_f64() * 1e3);
        let mut status = status;
        status.wait().unwrap();
    }
    let (median, p99) = median_p99(times.split_off(3));
    println!("\n## Cold start: `fediprobe once` from exec to its first request byte ({RUNS} runs)\n");
    println!("| median | p99 |");
    println!("|---|---|");
    println!("| {median:.2} ms | {p99:.2} ms |");
}

// ---------------------------------------------------------------------------
// Slow targets.

/// Child mode: rounds (`SLOW_ROUNDS`, default 3) of `runs` runs all in flight at once against a server
/// that never answers, each with a [`SLOW_DEADLINE`] deadline. Prints one line
/// per round: runs, timeouts, median and max lateness past the deadline (ms),
/// peak RSS during the round and RSS after it (KiB).
fn slow_runs(base_url: &str, runs: usize) {
    let runtime = runtime();
    let runner = Arc::new(runner_for(base_url));
    let journey = Arc::new(one_request_journey("/", SLOW_DEADLINE));
    let rounds: usize = std::env::var("SLOW_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    for _round in 0..rounds {
        // RSS sampled every 50 ms by a thread while the round runs.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(Usage::own().rss_kib);
                    std::thread::sleep(Duration::from_millis(50));
                }
                peak
            })
        };
        let heap_before = heap_live();
        let (lateness, timeouts, heap_in_flight) = runtime.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..runs {
                let (runner, journey) = (runner.clone(), journey.clone());
                set.spawn(async move {
                    let started = tokio::time::Instant::now();
                    let result = runner.run(&journey).await;
                    (started.elapsed(), result.reason)
                });
            }
            // Halfway to the deadline every run is connected and waiting.
            tokio::time::sleep(SLOW_DEADLINE / 2).await;
            let heap_in_flight = heap_live() - heap_before;
            let mut lateness = Vec::new();
            let mut timeouts = 0;
            while let Some(joined) = set.join_next().await {
                let (elapsed, reason) = joined.unwrap();
                timeouts += usize::from(reason == Some(Reason::Timeout));
                lateness.push((elapsed.as_secs_f64() - SLOW_DEADLINE.as_secs_f64()) * 1e3);
            }
            (lateness, timeouts, heap_in_flight)
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let rss_peak = sampler.join().unwrap();
        // Let the runtime drop the aborted connection tasks, and mimalloc's purge
        // delay (1 s) pass, before measuring.
        std::thread::sleep(Duration::from_millis(1500));
        let after = Usage::own().rss_kib;
        let mut sorted = lateness;
        sorted.sort_by(f64::total_cmp);
        println!(
            "{runs} {timeouts} {:.2} {:.2} {rss_peak} {after} {}",
            quantile(&sorted, 0.5),
            sorted[sorted.len() - 1],
            heap_in_flight / runs as isize
        );
    }
}

fn slow_targets() {
    let server = Server::start("serve-silent");
    println!(
        "\n## Slow targets: {SLOW_RUNS} runs in flight against a server that accepts and never answers (deadline {} s), rounds one after the other in one process (the shipped allocator, mimalloc)\n",
        SLOW_DEADLINE.as_secs(),
    );
    println!(
        "| round | runs | ended by the deadline (`timeout`) | lateness median | lateness max | heap per run in flight | peak RSS | RSS after the round |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args(["slow-runs", &server.url("/"), &SLOW_RUNS.to_string()]).stderr(Stdio::inherit());
        let output = command.output().unwrap();
        for (round, line) in String::from_utf8(output.stdout).unwrap().lines().enumerate() {
            let f: Vec<f64> = line.split_whitespace().map(|v| v.parse().unwrap()).collect();
            println!(
                "| {} | {} | {} | {:.1} ms | {:.1} ms | {:.1} KiB | {:.1} MiB | {:.1} MiB |",
                round + 1,
                f[0],
                f[1],
                f[2],
                f[3],
                f[6] / 1024.0,
                mib(f[4] as u64),
                mib(f[5] as u64)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Agent footprint.

fn footprint() {
    const JOURNEYS: usize = 1000;
    let seconds: u64 = std::env::var("FOOTPRINT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(180);
    let binary = fediprobe_binary();
    println!("\n## Agent footprint: `fediprobe run` with {JOURNEYS} journeys each every minute, against the sandbox\n");
    let has_run = Command::new(&binary)
        .args(["run", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_run {
        println!("not measured: this `fediprobe` has no `run` command yet (the bench runs as soon as it has)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The sandbox, from the same binary; it prints `alpha at http://127.0.0.1:PORT (streaming …)`.
    let mut sandbox = Command::new(&binary)
        .args(["sandbox", "--instances", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(sandbox.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    let url = line.split_whitespace().nth(2).unwrap().to_owned();
    // Keep draining the sandbox's output: a closed pipe would end it at its next line.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let config = write_config(dir.path(), &url, JOURNEYS, "/health");
    let mut agent = Command::new(&binary)
        .args(["run", "--listen", "127.0.0.1:0", "-c"])
        .arg(&config)
        .env("FEDIPROBE_BENCH_TOKEN", "unused")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Skip the first minute (start-up, first firing), then measure whole minutes.
    std::thread::sleep(Duration::from_secs(60));
    let before = Usage::of(agent.id());
    let started = Instant::now();
    let mut peak = before.rss_kib;
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(500));
        peak = peak.max(Usage::of(agent.id()).rss_kib);
    }
    let after = Usage::of(agent.id());
    let cpu_share = (after.cpu - before.cpu).as_secs_f64() / started.elapsed().as_secs_f64() * 100.0;
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = sandbox.kill();
    let _ = sandbox.wait();
    println!("| measured for | CPU (% of one core) | RSS peak | RSS at the end |");
    println!("|---|---|---|---|");
    println!(
        "| {} s | {cpu_share:.2} % | {:.1} MiB | {:.1} MiB |",
        started.elapsed().as_secs(),
        mib(peak),
        mib(after.rss_kib)
    );
}

// ---------------------------------------------------------------------------
// The shipped binaries, beside curl and blackbox_exporter.

/// Samples per D for the `once`/curl/blackbox comparison.
fn once_runs(delay: u64) -> usize {
    let scale: f64 = std::env::var("SHIPPED_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let base = match delay {
        0 | 10 => 300,
        100 => 150,
        _ => 40,
    };
    ((base as f64 * scale).ceil() as usize).max(5)
}

/// The journey's `duration` (seconds) from `fediprobe once --output json`.
fn once_duration(binary: &Path, config: &Path) -> f64 {
    let output = Command::new(binary)
        .args(["once", "-c"])
        .arg(config)
        .args(["--output", "json"])
        .env("FEDIPROBE_BENCH_TOKEN", "unused")
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let result: serde_json::Value = serde_json::from_str(text.lines().next().expect("one result line")).unwrap();
    assert_eq!(result["outcome"], "success", "{text}");
    result["duration"].as_f64().expect("a duration")
}

/// curl's `time_total` (seconds): from the start of its transfer (connect
/// included) to the last byte, on a fresh connection, as a process.
fn curl_duration(url: &str) -> f64 {
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--fail", "-w", "%{time_total}", url])
        .output()
        .expect("curl is installed");
    assert!(output.status.success(), "curl {url} failed");
    String::from_utf8(output.stdout).unwrap().trim().parse().unwrap()
}

/// What a `fediprobe run` agent logged: `(journey, duration_ms)` of every run.
fn logged_runs(log: &str) -> Vec<(String, f64)> {
    log.lines()
        .filter(|l| l.contains("run finished"))
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let fields = &v["fields"];
            Some((fields["journey"].as_str()?.to_owned(), fields["duration_ms"].as_f64()?))
        })
        .collect()
}

/// A config for `fediprobe run` with `per_delay` journeys per D against
/// `/delay/D`, each once a minute (`* * * * *`) at its own offset (the default
/// spread): a run or two a second per delay, each journey at another phase of
/// the minute. (Three journeys per delay each every second fired at three fixed
/// phases of every second, so one that happened to meet the other agent's or the
/// bench's own work met it at every run, and moved an agent's median.) `probe`
/// names the probe: the offsets derive from it, so two agents measured side by
/// side with different names do not fire at the same instants (with the same
/// name, each run of one met the other's at the server, which spins its last
/// millisecond: two spinning requests held both cores of a 2-core machine).
fn write_every_minute_config(dir: &Path, base_url: &str, delays: &[u64], per_delay: usize, probe: &str) -> PathBuf {
    let journeys: Vec<(String, &str, String)> = delays
        .iter()
        .flat_map(|d| (0..per_delay).map(move |i| (format!("d{d}-{i}"), "* * * * *", format!("/delay/{d}"))))
        .collect();
    write_config_named(dir, base_url, &journeys, probe)
}

/// Starts `fediprobe run` on `config`, logging JSON to `log`; returns it and its port.
fn start_agent(binary: &Path, config: &Path, log: &Path) -> (Child, u16) {
    let port = free_port();
    let child = Command::new(binary)
        .args(["--log-format", "json", "run", "--listen", &format!("127.0.0.1:{port}"), "-c"])
        .arg(config)
        .env("FEDIPROBE_BENCH_TOKEN", "unused")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    (child, port)
}

/// Polls `/readyz` until it answers 200; the time from `since`.
fn wait_ready(port: u16, since: Instant) -> Duration {
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(stream, "GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            if response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200") {
                return since.elapsed();
            }
        }
        assert!(since.elapsed() < Duration::from_secs(60), "the agent did not become ready");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn p50_p99_line(values: Vec<f64>) -> String {
    let n = values.len();
    let (m, p) = median_p99(values);
    format!("{m:.3} | {p:.3} | {n}")
}

/// The fediprobe binaries the shipped sections run: the one built here, and
/// (side by side, in the same minutes) an earlier build named by `SHIPPED_BEFORE`.
/// `once` also runs the builds `SHIPPED_ONCE_ALSO` names (`label=path,…`), e.g. a
/// variant with another runtime.
fn shipped_binaries(once: bool) -> Vec<(String, PathBuf)> {
    let mut binaries = vec![("fediprobe".to_owned(), fediprobe_binary())];
    if let Ok(path) = std::env::var("SHIPPED_BEFORE") {
        binaries.push(("before".to_owned(), PathBuf::from(path)));
    }
    if once && let Ok(list) = std::env::var("SHIPPED_ONCE_ALSO") {
        for entry in list.split(',').filter(|e| !e.is_empty()) {
            let (label, path) = entry.split_once('=').expect("SHIPPED_ONCE_ALSO is label=path,…");
            binaries.push((label.to_owned(), PathBuf::from(path)));
        }
    }
    binaries
}

/// The machine's 1-minute load average, for saying how busy the machine was.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split(' ').next()?.parse().ok()).unwrap_or(-1.0)
}

fn load_range(loads: &[f64]) -> String {
    let min = loads.iter().copied().fold(f64::INFINITY, f64::min);
    let max = loads.iter().copied().fold(0.0, f64::max);
    format!("load average (1 min) {min:.2}–{max:.2} over {} readings", loads.len())
}

fn shipped() {
    let server = Server::start("serve-delay");
    let blackbox = Blackbox::start();
    let dir = tempfile::tempdir().unwrap();
    let base = server.url("");

    // `SHIPPED_SECTIONS=once,run,footprint` (default: all three) picks sections.
    let sections = std::env::var("SHIPPED_SECTIONS").unwrap_or_else(|_| "once,run,footprint".to_owned());
    let wanted = |name: &str| sections.split(',').any(|s| s.trim() == name);

    if wanted("once") {
        // 1. `fediprobe once` as a process, curl and blackbox_exporter, interleaved.
        let binaries = shipped_binaries(true);
        println!(
            "\n## Timing overhead: reported − D (ms), `fediprobe once` process, curl and blackbox_exporter interleaved\n"
        );
        let mut header = String::from("| D |");
        for (label, _) in &binaries {
            header.push_str(&format!(" {label} once median | p99 | samples |"));
        }
        println!("{header} curl median | p99 | samples | blackbox median | p99 | samples |");
        println!("|---|{}---|---|---|---|---|---|", "---|---|---|".repeat(binaries.len()));
        let mut loads = Vec::new();
        for delay in DELAYS_MS {
            let sub = dir.path().join(format!("once-{delay}"));
            let config = write_config(&sub, &base, 1, &format!("/delay/{delay}"));
            let url = server.url(&format!("/delay/{delay}"));
            let d = delay as f64;
            for _ in 0..3 {
                for (_, binary) in &binaries {
                    once_duration(binary, &config);
                }
                curl_duration(&url);
                blackbox.probe(&url);
            }
            let mut fp: Vec<Vec<f64>> = vec![Vec::new(); binaries.len()];
            let (mut curl, mut bb) = (Vec::new(), Vec::new());
            for sample in 0..once_runs(delay) {
                if sample % 20 == 0 {
                    loads.push(load_average());
                }
                for (i, (_, binary)) in binaries.iter().enumerate() {
                    fp[i].push(once_duration(binary, &config) * 1e3 - d);
                }
                curl.push(curl_duration(&url) * 1e3 - d);
                bb.push(blackbox.probe(&url).0 * 1e3 - d);
            }
            let columns: Vec<String> = fp.into_iter().map(p50_p99_line).collect();
            println!("| {delay} ms | {} | {} | {} |", columns.join(" | "), p50_p99_line(curl), p50_p99_line(bb));
        }
        println!("\n{}", load_range(&loads));
    }

    if wanted("run") {
        // 2. `fediprobe run` with 120 journeys per delay each once a minute (two
        //    runs a second per delay, at 120 phases of the minute), curl and
        //    blackbox_exporter once a second each in the same period at a random
        //    phase of each second, /metrics scraped every 15 s. With
        //    `SHIPPED_BEFORE`, the earlier build runs as a second agent beside it.
        let agents_binaries = shipped_binaries(false);
        let secs: u64 = std::env::var("SHIPPED_AGENT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
        const AGENT_DELAYS: [u64; 3] = [0, 10, 100];
        const PER_DELAY: usize = 120;
        let mut agents = Vec::new();
        for (label, binary) in &agents_binaries {
            let sub = dir.path().join(format!("agent-jitter-{label}"));
            let config = write_every_minute_config(&sub, &base, &AGENT_DELAYS, PER_DELAY, &label.replace(' ', "-"));
            let log = sub.join("agent.log");
            let (agent, port) = start_agent(binary, &config, &log);
            agents.push((label.clone(), agent, port, log));
        }
        for (_, _, port, _) in &agents {
            wait_ready(*port, Instant::now());
        }
        std::thread::sleep(Duration::from_secs(3));
        let log_starts: Vec<usize> =
            agents.iter().map(|(_, _, _, log)| std::fs::read_to_string(log).unwrap().len()).collect();
        let (mut curl, mut bb): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (vec![Vec::new(); 3], vec![Vec::new(); 3]);
        let started = Instant::now();
        let mut next_scrape = started;
        let mut second = 0;
        let mut loads = Vec::new();
        while started.elapsed() < Duration::from_secs(secs) {
            if Instant::now() >= next_scrape {
                for (_, _, port, _) in &agents {
                    http_get(*port, "/metrics");
                }
                loads.push(load_average());
                next_scrape += Duration::from_secs(15);
            }
            for (i, delay) in AGENT_DELAYS.iter().enumerate() {
                let url = server.url(&format!("/delay/{delay}"));
                curl[i].push(curl_duration(&url) * 1e3 - *delay as f64);
                bb[i].push(blackbox.probe(&url).0 * 1e3 - *delay as f64);
            }
            // The next second's probes (and scrape) start at a random point of it:
            // the agents fire each journey at a fixed offset within every second,
            // and at a fixed phase curl's process start-up (or a scrape) would meet
            // the same journeys' runs every second, for the whole section.
            second += 1;
            let phase = Duration::from_millis(rand::random_range(0..600));
            let next = started + Duration::from_secs(second) + phase;
            if let Some(left) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(left);
            }
        }
        let mut runs = Vec::new();
        for ((_, agent, _, log), start) in agents.iter_mut().zip(&log_starts) {
            runs.push(logged_runs(&std::fs::read_to_string(&*log).unwrap()[*start..]));
            let _ = agent.kill();
            let _ = agent.wait();
        }
        println!(
            "\n## Timing overhead: reported − D (ms), `fediprobe run` ({PER_DELAY} journeys per D, each every minute, `/metrics` scraped every 15 s) beside curl and blackbox_exporter once a second per D, {secs} s\n"
        );
        let mut header = String::from("| D |");
        for (label, _, _, _) in &agents {
            header.push_str(&format!(" {label} run median | p99 | samples |"));
        }
        println!("{header} curl median | p99 | samples | blackbox median | p99 | samples |");
        println!("|---|{}---|---|---|---|---|---|", "---|---|---|".repeat(agents.len()));
        for (i, delay) in AGENT_DELAYS.iter().enumerate() {
            let prefix = format!("d{delay}-");
            let columns: Vec<String> = runs
                .iter()
                .map(|runs| {
                    p50_p99_line(
                        runs.iter().filter(|(j, _)| j.starts_with(&prefix)).map(|(_, ms)| ms - *delay as f64).collect(),
                    )
                })
                .collect();
            println!(
                "| {delay} ms | {} | {} | {} |",
                columns.join(" | "),
                p50_p99_line(curl[i].clone()),
                p50_p99_line(bb[i].clone())
            );
        }
        println!("\n{}", load_range(&loads));
    }

    if wanted("footprint") {
        // 3. The agent with 1000 journeys each every minute (default spread), /metrics
        //    scraped every 15 s: start-up, CPU per run, RSS, /metrics size and cost.
        //    With `SHIPPED_BEFORE`, both agents run at once, each with its own journeys.
        const JOURNEYS: usize = 1000;
        let secs: u64 = std::env::var("SHIPPED_FOOTPRINT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(180);
        struct Footprint {
            label: String,
            agent: Child,
            port: u16,
            log: PathBuf,
            startup: Duration,
            before: Usage,
            log_start: usize,
            peak: u64,
            scrape_bytes: usize,
            scrape_cpu: Duration,
        }
        let mut footprints = Vec::new();
        for (label, binary) in &shipped_binaries(false) {
            let sub = dir.path().join(format!("agent-footprint-{label}"));
            let config = write_config(&sub, &base, JOURNEYS, "/delay/0");
            let log = sub.join("agent.log");
            let spawned = Instant::now();
            let (agent, port) = start_agent(binary, &config, &log);
            let startup = wait_ready(port, spawned);
            footprints.push(Footprint {
                label: label.clone(),
                agent,
                port,
                log,
                startup,
                before: Usage::own(),
                log_start: 0,
                peak: 0,
                scrape_bytes: 0,
                scrape_cpu: Duration::ZERO,
            });
        }
        // The first minute: every journey's first slot.
        std::thread::sleep(Duration::from_secs(60));
        for f in &mut footprints {
            f.before = Usage::of(f.agent.id());
            f.log_start = std::fs::read_to_string(&f.log).unwrap().len();
            f.peak = f.before.rss_kib;
        }
        let started = Instant::now();
        // The floor: the same requests at the same rate from one thread of plain
        // blocking sockets (connect, write, read the answer, close), its own CPU.
        let bare_base = base.clone();
        let bare = std::thread::spawn(move || bare_requests(&bare_base, JOURNEYS, Duration::from_secs(secs)));
        // The peer: blackbox_exporter probing the same URL at the same rate, each
        // probe asked for as Prometheus asks (`/probe?target=…`), its own CPU.
        let peer_target = server.url("/delay/0");
        let peer_port = blackbox.port;
        let peer_before = blackbox.usage();
        let peer =
            std::thread::spawn(move || blackbox_probes(peer_port, &peer_target, JOURNEYS, Duration::from_secs(secs)));
        let mut scrapes = 0usize;
        let mut next_scrape = started;
        let mut loads = Vec::new();
        while started.elapsed() < Duration::from_secs(secs) {
            if Instant::now() >= next_scrape {
                for f in &mut footprints {
                    let cpu_before = Usage::of(f.agent.id()).cpu;
                    f.scrape_bytes = http_get(f.port, "/metrics").len();
                    f.scrape_cpu += Usage::of(f.agent.id()).cpu - cpu_before;
                }
                // blackbox_exporter's own /metrics, scraped as the agent's is.
                http_get(blackbox.port, "/metrics");
                loads.push(load_average());
                scrapes += 1;
                next_scrape += Duration::from_secs(15);
            }
            std::thread::sleep(Duration::from_millis(250));
            for f in &mut footprints {
                f.peak = f.peak.max(Usage::of(f.agent.id()).rss_kib);
            }
        }
        println!(
            "\n## `fediprobe run` with {JOURNEYS} journeys each every minute (default spread), `/metrics` scraped every 15 s, {secs} s after the first minute\n"
        );
        println!(
            "| build | start-up (exec → /readyz 200) | runs | CPU per run (scrapes included) | CPU % of one core | RSS peak | RSS at the end | /metrics size | per journey | CPU per scrape (10 ms ticks, {scrapes} scrapes) |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let elapsed = started.elapsed().as_secs_f64();
        for mut f in footprints {
            let after = Usage::of(f.agent.id());
            let runs = logged_runs(&std::fs::read_to_string(&f.log).unwrap()[f.log_start..]).len();
            let _ = f.agent.kill();
            let _ = f.agent.wait();
            let cpu = (after.cpu - f.before.cpu).as_secs_f64();
            println!(
                "| {} | {:.1} ms | {runs} | {:.0} µs | {:.2} % | {:.1} MiB | {:.1} MiB | {:.1} KB | {:.0} B | {:.1} ms |",
                f.label,
                f.startup.as_secs_f64() * 1e3,
                cpu / runs.max(1) as f64 * 1e6,
                cpu / elapsed * 100.0,
                mib(f.peak),
                mib(after.rss_kib),
                f.scrape_bytes as f64 / 1000.0,
                f.scrape_bytes / JOURNEYS,
                f.scrape_cpu.as_secs_f64() * 1e3 / scrapes.max(1) as f64
            );
        }
        let probes = peer.join().unwrap();
        let peer_after = blackbox.usage();
        let peer_cpu = (peer_after.cpu - peer_before.cpu).as_secs_f64();
        println!(
            "| blackbox_exporter (`/probe` of the same URL at the same rate, its /metrics scraped too) | — | {probes} | {:.0} µs | {:.2} % | {:.1} MiB | {:.1} MiB | — | — | — |",
            peer_cpu / probes.max(1) as f64 * 1e6,
            peer_cpu / elapsed * 100.0,
            mib(peer_after.peak_rss_kib),
            mib(peer_after.rss_kib)
        );
        let (requests, cpu) = bare.join().unwrap();
        println!(
            "| bare sockets (one thread, blocking std::net, the same request) | — | {requests} | {:.0} µs | {:.2} % | — | — | — | — | — |",
            cpu.as_secs_f64() / requests.max(1) as f64 * 1e6,
            cpu.as_secs_f64() / elapsed * 100.0
        );
        println!("\n{}", load_range(&loads));
    }
}

/// `journeys` requests a minute to `base` + `/delay/0` for `length`, evenly
/// spaced, each on a new connection closed after its answer: the work of an agent's
/// runs without the agent. Returns the requests made and the thread's CPU time.
/// blackbox_exporter asked to probe `target` `journeys` times a minute for
/// `length`, as Prometheus would with one scrape job per target: the probes made.
fn blackbox_probes(port: u16, target: &str, journeys: usize, length: Duration) -> usize {
    let every = Duration::from_secs(60) / journeys as u32;
    let path = format!("/probe?module=http_2xx&target={target}");
    let started = Instant::now();
    let mut probes = 0;
    while started.elapsed() < length {
        assert!(http_get(port, &path).contains("probe_success 1"), "blackbox_exporter's probe of {target} failed");
        probes += 1;
        if let Some(wait) = (every * probes as u32).checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    probes
}

fn bare_requests(base: &str, journeys: usize, length: Duration) -> (usize, Duration) {
    let authority = base.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let request =
        format!("GET /delay/0 HTTP/1.1\r\nhost: {authority}\r\nuser-agent: bare\r\naccept: application/json\r\n\r\n");
    let every = Duration::from_secs(60) / journeys as u32;
    let cpu_before = Usage::from_proc("/proc/thread-self").cpu;
    let started = Instant::now();
    let mut requests = 0;
    let mut buf = vec![0u8; 4096];
    while started.elapsed() < length {
        let mut stream = TcpStream::connect(authority.as_str()).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        // The answer: its head, then as many bytes as its content-length says.
        let mut got = Vec::new();
        loop {
            let n = stream.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + length || n == 0 {
                    break;
                }
            } else if n == 0 {
                break;
            }
        }
        drop(stream);
        requests += 1;
        let next = every * requests as u32;
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    (requests, Usage::from_proc("/proc/thread-self").cpu - cpu_before)
}

/// `fediprobe run` with 1000 journeys: exec → first `/readyz` 200, `AGENT_STARTS`
/// (default 15) times per build, the builds alternating.
fn agent_start() {
    const JOURNEYS: usize = 1000;
    let starts: usize = std::env::var("AGENT_STARTS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let binaries = shipped_binaries(false);
    let dir = tempfile::tempdir().unwrap();
    // Nothing answers there: the agent is stopped before the first slot matters.
    let config = write_config(dir.path(), "http://127.0.0.1:9", JOURNEYS, "/delay/0");
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); binaries.len()];
    let mut loads = Vec::new();
    for _ in 0..starts {
        loads.push(load_average());
        for (i, (_, binary)) in binaries.iter().enumerate() {
            let log = dir.path().join("agent.log");
            let spawned = Instant::now();
            let (mut agent, port) = start_agent(binary, &config, &log);
            times[i].push(wait_ready(port, spawned).as_secs_f64() * 1e3);
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }
    println!(
        "\n## Agent start-up: `fediprobe run` with {JOURNEYS} journeys, exec → first `/readyz` 200 ({starts} starts per build, alternating)\n"
    );
    println!("| build | median | max | starts |");
    println!("|---|---|---|---|");
    for ((label, _), values) in binaries.iter().zip(times) {
        let n = values.len();
        let (median, _) = median_p99(values.clone());
        let max = values.iter().copied().fold(0.0, f64::max);
        println!("| {label} | {median:.1} ms | {max:.1} ms | {n} |");
    }
    println!("\n{}", load_range(&loads));
}
