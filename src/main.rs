//! The `fediprobe` binary: everything is in the library (`fediprobe::cli`).

/// mimalloc instead of the C library's allocator. In the agent, glibc's spent
/// about a quarter of the CPU in `malloc` and `malloc_consolidate` (every run's
/// 8 KiB HTTP buffers make it sweep its small free chunks together again) and
/// kept what a burst of runs had freed (the container image's musl build would
/// otherwise use musl's allocator, not measured here). mimalloc is fast across
/// threads (a run's result is made on the runs' thread and freed on another) and
/// gives freed pages back by itself (lazily, after a purge delay). Built
/// without transparent huge pages (`no_thp` in Cargo.toml), so RSS stays what
/// glibc's was. Figures in BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    fediprobe::cli::main()
}
