#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its start. Pingora reads every body
/// into a fresh 64 KiB buffer; above `tcache_max` (32 KiB by default) each
/// of those is a trip to the arena, about 3k instructions a request for
/// the allocation and its free. Cached per thread they cost a few dozen.
#[cfg(feature = "jemalloc")]
#[allow(unsafe_code, non_upper_case_globals)] // jemalloc looks the symbol up by name
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 18] = b"tcache_max:131072\0";

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluice_gateway::cli::main()
}
