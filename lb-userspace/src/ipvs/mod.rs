//! IPVS over generic netlink: the pure message model ([`msg`]) and the client ([`client`]).

pub mod client;
pub mod msg;

pub use client::{IpvsClient, IpvsError};
pub use msg::{Dest, IpvsInfo, Service};
