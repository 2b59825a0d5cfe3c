//! Test equipment and tours, kept out of the production modules: the Stripe emulator (the
//! end-to-end tests' and the benchmarks' Stripe), the `demo` command and the `bench` command.
//! Nothing in the invoicing path imports this module.

pub mod bench;
pub mod demo;
pub mod emulator;
