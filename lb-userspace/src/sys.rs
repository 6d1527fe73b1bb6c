//! The unsafe edges of lbd's user space, each with its argument for why it is sound.
#![expect(
    unsafe_code,
    reason = "tokio fd registration, sockaddr_ll and mmap of BPF maps have no safe constructors"
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
/// Puts the calling thread under SCHED_RR at `priority` (1-99), as keepalived's
/// `vrrp_rt_priority` does for its VRRP process.
pub(crate) fn set_realtime(priority: u8) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: `param` is a valid sched_param for the call's duration; pid 0 is this thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own heap bookkeeping; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A BPF array map created with `BPF_F_MMAPABLE`, mapped into lbd's memory: writes land in
/// the kernel's copy at once, with no system call per slot. The kernel stores every array
/// element in 8 bytes (the value size rounded up), so the mapping is a slice of `u64`, a
/// `u32` value in the low half of its element.
#[derive(Debug)]
pub(crate) struct MappedArray {
    ptr: std::ptr::NonNull<u64>,
    len: usize,
    map_len: usize,
    // Keeps the map's descriptor (and so the map) alive as long as the mapping.
    _map: aya::maps::MapData,
}

// SAFETY: the mapping is plain shared memory owned by this value; moving it between threads
// is as safe as moving a Vec<u32>.
unsafe impl Send for MappedArray {}

impl MappedArray {
    /// Maps the `len` elements of `map` (its max_entries) read-write.
    pub(crate) fn new(map: aya::maps::MapData, len: usize) -> io::Result<Self> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        let page = 4096;
        let map_len = (len * size_of::<u64>()).div_ceil(page) * page;
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a fresh shared mapping of the map's own memory, at an address the kernel
        // picks; the kernel checks the length against the map's size and fails otherwise.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(ptr.cast::<u64>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Self {
            ptr,
            len,
            map_len,
            _map: map,
        })
    }

    /// The elements as `u32`s, two to an element: for an array of `u64`s that each hold two
    /// `u32` values (low half first on this little-endian-only code path: BPF is little-endian
    /// here, as x86-64 and arm64 are).
    pub(crate) fn as_mut_u32(&mut self) -> &mut [u32] {
        // SAFETY: the same memory as `as_mut_slice`, 4-aligned, twice as many 4-byte values;
        // &mut self makes it the only view in lbd.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<u32>(), self.len * 2) }
    }

    /// The elements, to read.
    pub(crate) fn as_slice(&self) -> &[u64] {
        // SAFETY: the mapping holds `len` 8-byte elements (page-aligned, so aligned) and lives
        // as long as self; lbd writes it only through `&mut self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The elements.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u64] {
        // SAFETY: the mapping holds `len` 8-byte elements (page-aligned, so aligned) and lives
        // as long as self; &mut self makes this the only slice of it in lbd (the BPF program
        // reads it concurrently, and aligned stores are atomic for it).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The map itself.
    pub(crate) fn map(&self) -> &aya::maps::MapData {
        &self._map
    }
}

impl Drop for MappedArray {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in new; no slice of it outlives self.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.map_len);
        }
    }
}
