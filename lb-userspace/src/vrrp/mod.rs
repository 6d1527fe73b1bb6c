//! VRRP v2 and v3: the wire codec ([`wire`], pure) and the per-instance state machine
//! ([`instance`], pure), and the [`driver`] that owns an interface's sockets and the clock,
//! with [`io`] for the kernel calls.

pub mod announce;
pub mod driver;
pub mod instance;
pub mod io;
pub mod sync;
pub mod track;
pub mod tracker;
pub mod wire;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
