//! `leadscore bench`: generates data and measures ingest, rescore and the lead list.

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs) -> Result<()> {
    anyhow::bail!("benchmarks are being written")
}
