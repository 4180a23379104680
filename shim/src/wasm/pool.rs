//! The pooling allocator of the wasi:http engine, where every request is a
//! fresh instance: how many instances, how much memory each, and what is
//! kept resident between requests.

use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig};

/// Instances the pooled engine holds at once, shim-wide: the most requests
/// that run at the same time; more wait for a slot (in their connection)
/// rather than fail. 128 keeps far more requests in flight than two cores can
/// execute, so handlers that wait on I/O do not starve the rest, while each
/// slot's address-space reservation (a 4 GiB memory slot with guards, a fiber
/// stack, instance state) stays well inside the 128 TiB of a process. Slots
/// cost physical memory only while used (and while kept warm for reuse).
pub const POOL_INSTANCES: u32 = 128;
/// Linear memory one instance may grow to, whatever the container's limit:
/// a per-request handler needing more is broken, and 128 of them at this
/// bound already exceed any machine this shim runs on.
const MAX_INSTANCE_MEMORY: usize = 1 << 30;

/// Bytes of each memory slot reset by hand (from the image) rather than given
/// back with madvise and faulted in again by the next request: page faults,
/// copy-on-write faults and madvise each flush the TLB of every core running
/// a shim thread (IPIs). With the PAGEMAP_SCAN ioctl (Linux ≥ 6.7, used when
/// present) only the pages a request dirtied are reset; without it the
/// lowest KEEP_RESIDENT bytes are reset whole. A typical Rust component's
/// memory (1 MiB stack, data, heap) fits; the rest of a larger one is given
/// back as before. Costs up to this much RSS per slot in use. Measured here
/// at 50 connections, µs of shim CPU per request: 41 with madvise, 37 with
/// whole resets, 34 with PAGEMAP_SCAN.
const KEEP_RESIDENT: usize = 2 << 20;

/// The pooling configuration of the wasi:http engine: copy-on-write memory
/// images (Wasmtime's default) make instantiation a few mappings rather than
/// a copy of the data segments.
pub fn pooling_config() -> InstanceAllocationStrategy {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        // A Rust wasip2 component is a handful of core instances (the
        // program, wit-component's shims, an adapter); composed or
        // JavaScript components have more. Unused slots cost address space.
        .total_core_instances(POOL_INSTANCES * 16)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 4)
        // Every request runs on a fiber of its own.
        .total_stacks(POOL_INSTANCES)
        .max_memory_size(MAX_INSTANCE_MEMORY);
    pool.linear_memory_keep_resident(KEEP_RESIDENT).table_keep_resident(64 << 10);
    // Off by default in Wasmtime 48; Auto uses it where the kernel has it.
    pool.pagemap_scan(wasmtime::Enabled::Auto);
    InstanceAllocationStrategy::Pooling(pool)
}

