//! The `jitbot` binary; everything lives in the library (`jitbot::cli`).

use clap::Parser;

#[tokio::main]
async fn main() {
    let code = jitbot::cli::run(jitbot::cli::Cli::parse()).await;
    std::process::exit(code);
}
