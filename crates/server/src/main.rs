//! The `ippin` binary.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("ippin: the server is not built yet (issue 9)");
    std::process::exit(2);
}
