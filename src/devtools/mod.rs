//! Test equipment and tours, kept out of the production modules: the Stripe emulator (the
//! end-to-end tests' and the benchmarks' Stripe), the `demo` command, the `bench` and `bench-changes`
//! commands and `bench-api`'s load generator.
//! Nothing in the invoicing path imports this module.

pub mod api_load;
pub mod bench;
pub mod bench_changes;
pub mod demo;
pub mod emulator;
