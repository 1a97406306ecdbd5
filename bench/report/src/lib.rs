//! `bench-report`: turns `bench/results.json` into summary lines, the generated blocks of
//! `docs/BENCHMARKS.md` and plots.

pub mod blocks;
pub mod markdown;
pub mod numbers;
pub mod plots;
pub mod results;
pub mod stats;
pub mod summary;
