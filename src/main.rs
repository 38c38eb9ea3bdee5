fn main() -> std::process::ExitCode {
    fediprobe::cli::main()
}
