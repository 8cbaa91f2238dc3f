//! The `haul` command: [`haul::cli::main`] over the process's arguments.

use std::process::ExitCode;

// The binary's allocator: glibc malloc was 7% of the CPU of 10,000 small
// files (arena locks across the runtime's and the disk's threads);
// mimalloc cut the whole run's CPU by 12%.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ExitCode::from(haul::cli::main(std::env::args_os()))
}
