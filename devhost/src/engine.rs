//! The wasmtime engine devhost compiles and runs components with, and the one memory cap every
//! instance has, whichever way its memory is allocated.

use anyhow::Result;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, StoreLimits, StoreLimitsBuilder,
};

/// The most a linear memory of an instance may grow to. A guest that asks for more gets an
/// allocation failure (a Rust guest aborts: the instance traps and the client gets an empty 500).
pub const MAX_MEMORY_BYTES: usize = 256 << 20;

/// Instances that may be alive at once across all components (the pooling allocator's slots).
const MAX_CONCURRENT_INSTANCES: u32 = 1000;

/// How instances get their memory, tables and stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InstanceAllocator {
    /// Slots reserved up front and reused (the default, and the fast one); if the system refuses
    /// the reservation, devhost says so and allocates on demand.
    Pooling,
    /// A fresh allocation per instance.
    OnDemand,
}

pub fn new_engine(allocator: InstanceAllocator) -> Result<Engine> {
    let mut config = Config::new();
    if allocator == InstanceAllocator::Pooling {
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(MAX_CONCURRENT_INSTANCES)
            .total_core_instances(4 * MAX_CONCURRENT_INSTANCES)
            .total_memories(MAX_CONCURRENT_INSTANCES)
            .total_tables(4 * MAX_CONCURRENT_INSTANCES)
            .total_stacks(MAX_CONCURRENT_INSTANCES)
            .max_memory_size(MAX_MEMORY_BYTES);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        match Engine::new(&config) {
            Ok(engine) => return Ok(engine),
            // The pooling allocator reserves address space up front; some sandboxes refuse that.
            Err(pooling_error) => {
                eprintln!("devhost: pooling allocator unavailable ({pooling_error:#}); allocating on demand")
            }
        }
    }
    config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    Ok(Engine::new(&config)?)
}

/// The limits of each instance's store. The pooling allocator's slots already end at
/// [`MAX_MEMORY_BYTES`]; memory allocated on demand is held to it only by these.
pub fn store_limits() -> StoreLimits {
    StoreLimitsBuilder::new().memory_size(MAX_MEMORY_BYTES).build()
}
