//! VRRP v2 and v3: the wire codec ([`wire`], pure) and the per-instance state machine
//! ([`instance`], pure); the driver that owns sockets and the clock comes on top.

pub mod instance;
pub mod wire;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
