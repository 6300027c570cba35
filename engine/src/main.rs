//! The `mediaflow` binary: everything lives in the library; see `mediaflow::cli`.

// mimalloc reuses the large per-image buffers instead of mapping and faulting them in afresh
// for every image, as glibc's malloc does above its mmap threshold (~10% less CPU per image).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mediaflow::cli::main()
}
