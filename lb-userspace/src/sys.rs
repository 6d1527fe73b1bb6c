//! The unsafe edges of lbd's user space, each with its argument for why it is sound.
#![expect(
    unsafe_code,
    reason = "tokio fd registration and sockaddr_ll have no safe constructors"
)]

use std::io;

use socket2::{SockAddr, SockAddrStorage, Socket};
use tokio::io::{Interest, unix::AsyncFd};

/// Registers a socket with tokio's reactor for readiness.
pub(crate) fn async_socket(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: `Socket` owns its file descriptor, keeps it open until dropped and returns the
    // same descriptor from every `as_raw_fd` call; the AsyncFd takes ownership of it.
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.map_err(io::Error::from)
}

/// A link-layer address (`sockaddr_ll`) for an AF_PACKET socket on `ifindex`, sending
/// `protocol` (an EtherType) to `dest`.
pub(crate) fn link_layer_addr(ifindex: u32, protocol: u16, dest: [u8; 6]) -> io::Result<SockAddr> {
    // SAFETY: try_init hands us zeroed storage as large as sockaddr_storage, which holds a
    // sockaddr_ll; we write only its fields and report its size.
    let ((), addr) = unsafe {
        SockAddr::try_init(|storage: *mut SockAddrStorage, len| {
            let ll = storage.cast::<libc::sockaddr_ll>();
            (*ll).sll_family = libc::AF_PACKET as u16;
            (*ll).sll_protocol = protocol.to_be();
            (*ll).sll_ifindex =
                i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            (*ll).sll_halen = 6;
            let mut sll_addr = [0u8; 8];
            sll_addr[..6].copy_from_slice(&dest);
            (*ll).sll_addr = sll_addr;
            *len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            Ok(())
        })
    }?;
    Ok(addr)
}

/// A timerfd that tokio's reactor can watch (nix's `TimerFd` has no `AsRawFd`).
#[derive(Debug)]
pub(crate) struct TimerHandle(pub(crate) nix::sys::timerfd::TimerFd);

impl std::os::fd::AsRawFd for TimerHandle {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd as _;
        self.0.as_fd().as_raw_fd()
    }
}

/// Registers a timerfd with tokio's reactor for readiness.
pub(crate) fn async_timer(timer: nix::sys::timerfd::TimerFd) -> io::Result<AsyncFd<TimerHandle>> {
    // SAFETY: `TimerFd` owns its descriptor and closes it only when dropped, which happens
    // after the AsyncFd that owns it deregisters.
    unsafe { AsyncFd::register_with_interest(TimerHandle(timer), Interest::READABLE) }
        .map_err(io::Error::from)
}

/// Registers lbd's VRRP event ring buffer with tokio's reactor for readiness.
pub(crate) fn async_ring(
    ring: aya::maps::RingBuf<aya::maps::MapData>,
) -> io::Result<AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>> {
    // SAFETY: the RingBuf owns its map's descriptor (through MapData) and closes it only when
    // dropped, after the AsyncFd that owns it deregisters.
    unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(io::Error::from)
}

/// Gives the heap's free pages back to the kernel: after startup, the configuration's parse
/// tree (tens of MB for 10,000 real servers) is garbage that glibc would otherwise keep.
pub(crate) fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own heap bookkeeping; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
