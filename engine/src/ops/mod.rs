//! Every differentiable op, one folder each: `mod.rs` holds the docs (the
//! math of y and of dy/dx), the public function, its shape checks and its
//! tape entry with the backward rule; `cpu.rs` the plain reference loops.
//!
//! Adding an op: a new folder here, one line below, and one row in each test
//! table (gradient checks in `tests/tests/gradcheck.rs`).

pub mod matmul;
pub mod relu;

pub use matmul::matmul;
pub use relu::relu;
