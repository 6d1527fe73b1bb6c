//! The IPVS VM tier: Debian's kernel (which has IPVS as modules) under qemu, with the host's
//! root shared read-only over virtio-9p under a throw-away overlay. `cargo xtask vm -- CMD`
//! runs CMD as root in the guest, in the current directory, streams its output and exits with
//! its status (125: the VM failed, 124: timeout). See ../shared/docs/ipvs-vm.md for the
//! measurements behind each choice (TCG, microvm, PVH vmlinux, tsc_early_khz, virtio-serial).
//!
//! Environment: `VM_TIMEOUT` (s, default 600), `VM_BOOT_TIMEOUT` (s, default 60; a hung boot
//! is retried once), `VM_MEM` (default 1G), `VM_CPUS` (default 2), `VM_MODULES`, `VM_VERBOSE=1`.

use std::{
    fmt::Write as _,
    fs,
    io::{Read as _, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::util::{output, run, target_dir};

const GUEST_INIT: &str = include_str!("../vm/guest-init.sh");
const DEFAULT_MODULES: &str = "ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh ip_vs_mh veth";
/// Host packages the guest uses (it runs the host's binaries).
const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "kmod",
    "ipvsadm",
    "iproute2",
];
/// Hardware-driver module trees a network-namespace VM never needs (~270 MB).
const PRUNE: &[&str] = &[
    "sound",
    "drivers/gpu",
    "drivers/media",
    "drivers/infiniband",
    "drivers/usb",
    "drivers/scsi",
    "drivers/iio",
    "drivers/hwmon",
    "drivers/bluetooth",
    "drivers/input",
    "drivers/hid",
    "drivers/mmc",
    "drivers/staging",
    "drivers/isdn",
    "drivers/ata",
    "drivers/mtd",
    "drivers/nvme",
    "drivers/target",
    "drivers/thunderbolt",
    "drivers/platform",
    "drivers/edac",
    "drivers/watchdog",
    "drivers/comedi",
    "drivers/misc",
    "drivers/net/wireless",
    "drivers/net/ethernet",
    "drivers/net/usb",
    "drivers/net/can",
    "drivers/net/phy",
    "drivers/net/wwan",
    "drivers/net/arcnet",
    "drivers/net/fddi",
    "drivers/net/hamradio",
    "drivers/net/ieee802154",
];
/// Modules the initramfs loads before it can mount the host root.
const EARLY_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_mmio",
    "virtio_console",
    "9pnet_virtio",
    "9p",
    "overlay",
];

fn vm_dir() -> PathBuf {
    std::env::var_os("LBD_VM_DIR").map_or_else(|| target_dir().join("ipvs-vm"), PathBuf::from)
}

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// The kernel package `linux-image-amd64` points at today (Debian keeps only the current one).
fn kernel_package() -> anyhow::Result<String> {
    let deps = output(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    deps.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| {
            p.starts_with("linux-image-") && p.as_bytes().get(12).is_some_and(u8::is_ascii_digit)
        })
        .map(str::to_owned)
        .context("apt-cache depends linux-image-amd64 names no kernel (did apt-get update run?)")
}

/// Downloads, unpacks and prunes the kernel; builds the initramfs. Quick when done already.
pub(crate) fn prepare() -> anyhow::Result<()> {
    let dir = vm_dir();
    fs::create_dir_all(&dir)?;
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| !crate::util::have_package(p))
        .collect();
    if !missing.is_empty() {
        crate::setup::packages()?;
    }
    // Reuse a prepared kernel without asking apt (warm runs, offline runs).
    let kv = match fs::read_to_string(dir.join("kernel-version")) {
        Ok(kv) if dir.join(format!("kernel/.done-{}", kv.trim())).exists() => kv.trim().to_owned(),
        _ => {
            let package = kernel_package()?;
            let kv = package.trim_start_matches("linux-image-").to_owned();
            unpack_kernel(&dir, &package, &kv)?;
            fs::write(dir.join("kernel-version"), &kv)?;
            kv
        }
    };
    build_initramfs(&dir, &kv)
}

fn unpack_kernel(dir: &Path, package: &str, kv: &str) -> anyhow::Result<()> {
    let kdir = dir.join("kernel");
    eprintln!("vm: downloading {package}");
    let dl = dir.join("dl");
    fs::remove_dir_all(&dl).ok();
    fs::create_dir_all(&dl)?;
    run(Command::new("apt-get").current_dir(&dl).args([
        "download",
        "-qq",
        "-o",
        "APT::Sandbox::User=root",
        package,
    ]))?;
    let deb = fs::read_dir(&dl)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    fs::remove_dir_all(&kdir).ok();
    fs::create_dir_all(&kdir)?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&kdir))?;
    let modules = kdir.join(format!("lib/modules/{kv}/kernel"));
    for tree in PRUNE {
        fs::remove_dir_all(modules.join(tree)).ok();
    }
    run(Command::new("depmod").arg("-b").arg(&kdir).arg(kv))?;
    // The uncompressed ELF vmlinux boots through PVH: no real-mode setup, no xz decompression
    // under TCG (seconds).
    let bz = fs::read(kdir.join(format!("boot/vmlinuz-{kv}")))?;
    let start = bz
        .windows(6)
        .position(|w| w == b"\xfd7zXZ\x00")
        .context("no xz stream in the bzImage")?;
    // Linux compresses with xz's x86 BCJ filter; `--single-stream` stops at the end of the xz
    // stream and ignores the bzImage bytes after it.
    let mut xz = Command::new("xz")
        .args(["--single-stream", "-dc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting xz (xz-utils)")?;
    let mut stdin = xz.stdin.take().context("xz stdin")?;
    let payload = bz[start..].to_vec();
    let feeder = thread::spawn(move || stdin.write_all(&payload));
    let out = xz.wait_with_output()?;
    feeder
        .join()
        .map_err(|_| anyhow::anyhow!("xz feeder panicked"))?
        .ok();
    if !out.status.success() || !out.stdout.starts_with(b"\x7fELF") {
        bail!(
            "xz could not decompress the kernel's vmlinux ({})",
            out.status
        );
    }
    let elf = out.stdout;
    fs::write(kdir.join(format!("boot/vmlinux-{kv}")), elf)?;
    fs::remove_dir_all(&dl)?;
    fs::write(kdir.join(format!(".done-{kv}")), "")?;
    Ok(())
}

fn build_initramfs(dir: &Path, kv: &str) -> anyhow::Result<()> {
    let initrd = dir.join("initrd.img");
    // Rebuilt when the init script or the kernel changes.
    let stamp = format!("{kv}\n{GUEST_INIT}");
    let stamp_path = dir.join("initrd.stamp");
    if initrd.exists() && fs::read_to_string(&stamp_path).ok().as_deref() == Some(&stamp) {
        return Ok(());
    }
    eprintln!("vm: building the initramfs");
    let kdir = dir.join("kernel");
    let root = dir.join("initrd.root");
    fs::remove_dir_all(&root).ok();
    for d in [
        "bin",
        "sbin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "mnt/lower",
        "mnt/rw",
        "newroot",
        "vmio",
    ] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::copy("/bin/busybox", root.join("bin/busybox"))
        .context("copying /bin/busybox (busybox-static)")?;
    let mut list = String::new();
    let mut seen = std::collections::HashSet::new();
    for m in EARLY_MODULES {
        let deps = output(Command::new("modprobe").arg("-d").arg(&kdir).args([
            "-S",
            kv,
            "--show-depends",
            m,
        ]))?;
        for ko in deps
            .lines()
            .filter_map(|l| l.strip_prefix("insmod "))
            .map(|l| l.split_whitespace().next().unwrap_or(l))
        {
            if !seen.insert(ko.to_owned()) {
                continue;
            }
            let rel = Path::new(ko).strip_prefix(kdir.join(format!("lib/modules/{kv}")))?;
            let dest = root.join(format!("lib/modules/{kv}")).join(rel);
            fs::create_dir_all(dest.parent().context("module path")?)?;
            fs::copy(ko, &dest)?;
            writeln!(list, "{}", rel.display())?;
        }
    }
    fs::write(root.join("modules.list"), list)?;
    write_executable(&root.join("init"), GUEST_INIT)?;
    // In-kernel module autoload runs this from the initramfs root: run the host's modprobe in
    // the guest root, which has the unpacked modules bind-mounted.
    write_executable(
        &root.join("sbin/modprobe-chroot"),
        "#!/bin/busybox sh\nexec /bin/busybox chroot /newroot /sbin/modprobe \"$@\"\n",
    )?;
    let tmp = dir.join("initrd.img.tmp");
    run(Command::new("sh").current_dir(&root).arg("-c").arg(format!(
        "find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 > '{}'",
        tmp.display()
    )))?;
    fs::rename(&tmp, &initrd)?;
    fs::remove_dir_all(&root)?;
    fs::write(stamp_path, stamp)?;
    Ok(())
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)?
        .write_all(text.as_bytes())?;
    Ok(())
}

/// Quotes `s` for bash.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn use_kvm() -> bool {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
        && (Path::new("/sys/module/kvm_intel").exists()
            || Path::new("/sys/module/kvm_amd").exists())
}

/// The host TSC rate in kHz, when the kernel knows it exactly (microvm needs it under TCG:
/// without an HPET it calibrates against the PIT, which fails under load and hangs the boot).
fn tsc_khz() -> Option<u64> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").ok()?;
    let known = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "tsc_known_freq"));
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    known.then_some((mhz * 1000.0) as u64)
}

/// Runs `args` in the VM; returns its exit status.
pub(crate) fn run_in_vm(args: &[String]) -> anyhow::Result<i32> {
    if args.is_empty() {
        bail!("usage: cargo xtask vm -- CMD [ARGS...]");
    }
    prepare()?;
    let dir = vm_dir();
    let kv = fs::read_to_string(dir.join("kernel-version"))?
        .trim()
        .to_owned();
    let io = tempdir()?;
    let result = boot(&dir, &kv, &io, args);
    fs::remove_dir_all(&io).ok();
    result
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let base = std::env::temp_dir();
    for n in 0..1000u32 {
        let p = base.join(format!("lbd-vm.{}.{n}", std::process::id()));
        if fs::create_dir(&p).is_ok() {
            return Ok(p);
        }
    }
    bail!("cannot create a temporary directory in {}", base.display())
}

fn boot(dir: &Path, kv: &str, io: &Path, args: &[String]) -> anyhow::Result<i32> {
    let mut script = String::new();
    for var in [
        "PATH",
        "HOME",
        "TERM",
        "USER",
        "LANG",
        "RUST_BACKTRACE",
        "RUST_LOG",
        "RUST_TEST_THREADS",
        "CI",
    ] {
        if let Ok(v) = std::env::var(var) {
            writeln!(script, "export {var}={}", shell_quote(&v))?;
        }
    }
    writeln!(script, "export RUN_IN_VM=1")?;
    writeln!(
        script,
        "cd {} || exit 125",
        shell_quote(&std::env::current_dir()?.to_string_lossy())
    )?;
    let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    writeln!(script, "exec {}", quoted.join(" "))?;
    fs::write(io.join("cmd.sh"), script)?;
    let modules = std::env::var("VM_MODULES").unwrap_or_else(|_| DEFAULT_MODULES.to_owned());
    let kmod = dir.join("kernel/lib/modules");
    fs::write(
        io.join("config"),
        format!(
            "VM_KMOD={}\nVM_MODULES={}\nVM_RW_DIRS=''\n",
            shell_quote(&kmod.to_string_lossy()),
            shell_quote(&modules)
        ),
    )?;

    let kvm = use_kvm();
    let mut append =
        "console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init tsc=reliable no_timer_check"
            .to_owned();
    let (machine, bus) = match (kvm, tsc_khz()) {
        (true, _) => ("microvm,x-option-roms=off,isa-serial=on", "device"),
        (false, Some(khz)) => {
            write!(append, " tsc_early_khz={khz}")?;
            ("microvm,x-option-roms=off,isa-serial=on", "device")
        }
        // No exact TSC rate: a machine with an HPET calibrates reliably.
        (false, None) => {
            append.push_str(" i8042.noaux i8042.nokbd i8042.nopnp");
            ("q35", "pci")
        }
    };
    let kernel = dir.join(format!("kernel/boot/vmlinux-{kv}"));
    let console = io.join("console.log");
    let total = env_secs("VM_TIMEOUT", 600);
    let boot_timeout = env_secs("VM_BOOT_TIMEOUT", 60);
    let started = Instant::now();
    for attempt in 0..2 {
        fs::remove_file(io.join("rc")).ok();
        fs::write(&console, "")?;
        let out = io.join("out");
        let err = io.join("err");
        for fifo in [&out, &err] {
            fs::remove_file(fifo).ok();
            output(Command::new("mkfifo").arg(fifo))?;
        }
        // Guest stdout/stderr arrive on virtio-serial ports backed by these FIFOs.
        let copy_out = spawn_copy(out.clone(), false);
        let copy_err = spawn_copy(err.clone(), true);
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args([
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-no-reboot",
            "-machine",
            machine,
        ])
        .args(if kvm {
            ["-accel", "kvm", "-cpu", "host"]
        } else {
            ["-accel", "tcg,thread=multi", "-cpu", "max"]
        })
        .args([
            "-smp",
            &std::env::var("VM_CPUS").unwrap_or_else(|_| "2".to_owned()),
        ])
        .args([
            "-m",
            &std::env::var("VM_MEM").unwrap_or_else(|_| "1G".to_owned()),
        ])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(dir.join("initrd.img"))
        .args(["-append", &append, "-nic", "none"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args([
            "-fsdev",
            "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        ])
        .args([
            "-device",
            &format!("virtio-9p-{bus},fsdev=hostroot,mount_tag=hostroot"),
        ])
        .args([
            "-fsdev",
            &format!("local,id=vmio,path={},security_model=none", io.display()),
        ])
        .args([
            "-device",
            &format!("virtio-9p-{bus},fsdev=vmio,mount_tag=vmio"),
        ])
        .args(["-device", &format!("virtio-serial-{bus}")])
        .args(["-chardev", &format!("file,id=vout,path={}", out.display())])
        .args(["-device", "virtserialport,chardev=vout,name=out"])
        .args(["-chardev", &format!("file,id=verr,path={}", err.display())])
        .args(["-device", "virtserialport,chardev=verr,name=err"])
        .stdin(Stdio::null());
        let mut child = qemu.spawn().context("starting qemu-system-x86_64")?;
        let mut booted = false;
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if !booted {
                booted = fs::read_to_string(&console).is_ok_and(|c| c.contains("VM-INIT-START"));
                if !booted && started.elapsed() > boot_timeout * (attempt + 1) {
                    break None;
                }
            }
            if started.elapsed() > total {
                timed_out = true;
                break None;
            }
            thread::sleep(Duration::from_millis(50));
        };
        if status.is_none() {
            child.kill().ok();
            child.wait().ok();
        }
        // Readers still blocked in open() (qemu died before opening its chardevs) wake when a
        // writer opens and closes the FIFO.
        for fifo in [&out, &err] {
            fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(fifo)
                .ok();
        }
        copy_out.join().ok();
        copy_err.join().ok();
        let verbose = std::env::var("VM_VERBOSE").is_ok_and(|v| v == "1");
        if verbose {
            eprintln!(
                "vm: kvm={kvm} machine={machine} kernel={kv} wall={:.2}s",
                started.elapsed().as_secs_f64()
            );
            eprintln!("{}", fs::read_to_string(&console).unwrap_or_default());
        }
        if let Ok(rc) = fs::read_to_string(io.join("rc")) {
            return Ok(rc.trim().parse().unwrap_or(125));
        }
        let tail = console_tail(&console);
        if timed_out {
            eprintln!("vm: timeout after {}s; console:\n{tail}", total.as_secs());
            return Ok(124);
        }
        if !booted && attempt == 0 {
            eprintln!(
                "vm: the guest did not reach init within {}s; retrying. Console:\n{tail}",
                boot_timeout.as_secs()
            );
            continue;
        }
        eprintln!("vm: the VM gave no exit status (qemu {status:?}); console:\n{tail}");
        return Ok(125);
    }
    Ok(125)
}

fn console_tail(console: &Path) -> String {
    let text = fs::read_to_string(console).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn spawn_copy(fifo: PathBuf, to_stderr: bool) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let Ok(mut reader) = fs::File::open(&fifo) else {
            return;
        };
        let mut buf = [0u8; 65536];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let written = if to_stderr {
                        std::io::stderr().write_all(&buf[..n])
                    } else {
                        std::io::stdout().write_all(&buf[..n])
                    };
                    if written.is_err() {
                        break;
                    }
                }
            }
        }
    })
}
