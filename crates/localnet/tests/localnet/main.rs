//! End-to-end tests of the embedded local mixnet over real loopback
//! sockets: a protocol-level client built from nymd-proto talks to the
//! gateways; raw TCP peers talk to the nodes; a raw HTTP client reads the
//! directory. Every test is bounded in time.

mod support;

mod binary;
mod directory;
mod e2e;
mod flood;
mod malformed;
mod persist;
