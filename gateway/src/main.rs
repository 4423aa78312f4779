fn main() -> std::process::ExitCode {
    sluice_gateway::cli::main()
}
