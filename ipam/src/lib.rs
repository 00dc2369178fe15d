//! A pure IP address allocator with Metal3 IP Address Manager semantics: no I/O, no
//! clock, no async.
//!
//! Status: skeleton. Pools of ranges and subnets, pre-allocations, idempotent claims,
//! release and reuse, IPv4 and IPv6, validation and serializable state arrive with the
//! ipam issue.
