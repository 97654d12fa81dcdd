//! The FFI edge: every exported function of the library. Each gathers facts (the address,
//! the socket's transport), asks `reuse_core::decision`, acts, and hands back exactly what the
//! real function returned, with the errno it left.
//!
//! On ELF systems these are exported under the libc names, so the dynamic linker resolves
//! the program's calls to them first. On macOS they are exported as `reuse_socket` and so on,
//! and dyld's interpose table (at the end of this file) points the libc names at them.

use libc::{c_int, sockaddr, socklen_t};
use reuse_core::config::{Config, Hold, Level, Options};
use reuse_core::decision::{self, Decision, LeaveReason, Plan, Transport};
use reuse_core::endpoint::{self, BindAddress};
use reuse_core::hold_protocol::Request;

use crate::{activation, addr_in_use, errno, handover, real, report, socket_kinds, state, sys};

/// `socket()`: remember what was made, so `bind()` needs no system call to find out.
#[cfg_attr(not(target_vendor = "apple"), export_name = "socket")]
#[cfg_attr(target_vendor = "apple", no_mangle)]
pub unsafe extern "C" fn reuse_socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    // What it is, worked out before the call: one byte to keep across it.
    let kind = socket_kinds::kind_of(domain, ty, protocol);
    // SAFETY: the caller's arguments, as it gave them to socket().
    let fd = unsafe { real::call_socket(domain, ty, protocol) };
    if fd >= 0 {
        return socket_kinds::record(fd, kind);
    }
    fd
}

#[cfg_attr(not(target_vendor = "apple"), export_name = "close")]
#[cfg_attr(target_vendor = "apple", no_mangle)]
pub unsafe extern "C" fn reuse_close(fd: c_int) -> c_int {
    // Forget first: once the real close returns, another thread may get this number back.
    socket_kinds::forget(fd);
    // SAFETY: the caller's close().
    unsafe { real::close()(fd) }
}

/// `dup()`: the new number names the same socket. Without this, a number whose last socket
/// was closed behind libc's back (`fclose` of an `fdopen`ed socket, a raw close) would keep
/// that socket's kind.
#[cfg_attr(not(target_vendor = "apple"), export_name = "dup")]
#[cfg_attr(target_vendor = "apple", no_mangle)]
pub unsafe extern "C" fn reuse_dup(old: c_int) -> c_int {
    // SAFETY: the caller's dup().
    let new = unsafe { real::dup()(old) };
    if new >= 0 {
        socket_kinds::copy(old, new);
    }
    new
}

/// `dup2()`: the table follows only a call that succeeded; a failed one changed nothing.
#[cfg_attr(not(target_vendor = "apple"), export_name = "dup2")]
#[cfg_attr(target_vendor = "apple", no_mangle)]
pub unsafe extern "C" fn reuse_dup2(old: c_int, new: c_int) -> c_int {
    // SAFETY: the caller's dup2().
    let rc = unsafe { real::dup2()(old, new) };
    if rc == new && old != new {
        socket_kinds::copy(old, new);
    }
    rc
}

#[cfg(not(target_vendor = "apple"))]
#[export_name = "dup3"]
pub unsafe extern "C" fn reuse_dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    // SAFETY: the caller's dup3().
    let rc = unsafe { real::dup3()(old, new, flags) };
    if rc == new {
        socket_kinds::copy(old, new);
    }
    rc
}

/// `dlopen()`: a tail jump to the real one (so glibc sees its true caller, whose RUNPATH it
/// searches), except with RTLD_DEEPBIND, whose objects must be pointed at the hooks once
/// loaded (`deepbind`).
#[cfg(all(target_env = "gnu", target_arch = "x86_64"))]
#[export_name = "dlopen"]
#[unsafe(naked)]
pub unsafe extern "C" fn reuse_dlopen(
    _file: *const core::ffi::c_char,
    _flags: c_int,
) -> *mut core::ffi::c_void {
    core::arch::naked_asm!(
        "test esi, {deep}",
        "jnz 2f",
        "mov rax, qword ptr [rip + {real}]",
        "test rax, rax",
        "jz 3f",
        "jmp rax",
        // First use: look the real one up (the arguments kept, the stack aligned for the
        // call), then the same tail jump.
        "3:",
        "push rdi",
        "push rsi",
        "sub rsp, 8",
        "call {resolve}",
        "add rsp, 8",
        "pop rsi",
        "pop rdi",
        "test rax, rax",
        "jz 2f",
        "jmp rax",
        "2:",
        // The program's return address, for the slow path to find the caller's RUNPATH.
        "mov rdx, qword ptr [rsp]",
        "jmp {slow}",
        deep = const crate::deepbind::RTLD_DEEPBIND,
        real = sym real::DLOPEN,
        resolve = sym real::resolve_dlopen,
        slow = sym crate::deepbind::dlopen_deep,
    )
}

#[cfg(all(target_env = "gnu", target_arch = "aarch64"))]
#[export_name = "dlopen"]
#[unsafe(naked)]
pub unsafe extern "C" fn reuse_dlopen(
    _file: *const core::ffi::c_char,
    _flags: c_int,
) -> *mut core::ffi::c_void {
    core::arch::naked_asm!(
        "tbnz w1, #3, 2f",
        "adrp x16, {real}",
        "ldr x16, [x16, :lo12:{real}]",
        "cbz x16, 3f",
        "br x16",
        // First use: look the real one up (the arguments and the return address kept),
        // then the same tail jump.
        "3:",
        "stp x0, x1, [sp, #-32]!",
        "str x30, [sp, #16]",
        "bl {resolve}",
        "mov x16, x0",
        "ldr x30, [sp, #16]",
        "ldp x0, x1, [sp], #32",
        "cbz x16, 2f",
        "br x16",
        "2:",
        // The program's return address, for the slow path to find the caller's RUNPATH.
        "mov x2, x30",
        "b {slow}",
        real = sym real::DLOPEN,
        resolve = sym real::resolve_dlopen,
        slow = sym crate::deepbind::dlopen_deep,
    )
}

/// The most address bytes the kernel copies in for a bind (`sizeof(struct
/// sockaddr_storage)`); a longer length it refuses with EINVAL before reading anything.
const SOCKADDR_MAX: usize = 128;

/// The caller's address as the library may read it: only after the kernel has accepted it
/// (a bind that succeeded, or got as far as EADDRINUSE), which proves the `len` bytes
/// readable; never past `len`.
///
/// # Safety
/// The kernel has read `len` bytes at `addr` for a bind of this call.
unsafe fn accepted_address(addr: *const sockaddr, len: socklen_t) -> Option<BindAddress> {
    let n = (len as usize).min(endpoint::DECODED_MAX);
    if addr.is_null() {
        return None;
    }
    // SAFETY: the kernel read these bytes (the caller's promise), and nobody writes them
    // during the caller's bind().
    let bytes = unsafe { core::slice::from_raw_parts(addr.cast::<u8>(), n) };
    // A bind the kernel accepted with AF_UNSPEC was an AF_INET socket's INADDR_ANY.
    endpoint::decode(bytes, handover::abi(), true)
}

#[cfg_attr(not(target_vendor = "apple"), export_name = "bind")]
#[cfg_attr(target_vendor = "apple", no_mangle)]
pub unsafe extern "C" fn reuse_bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let Some(cfg) = state::active() else {
        // SAFETY: the caller's arguments, as it gave them to bind().
        return unsafe { real::bind()(fd, addr, len) };
    };
    let saved = errno::get();
    if let Some(hold) = &cfg.hold {
        // SAFETY: the caller's bind() arguments.
        if let Some(rc) = unsafe { bind_held(cfg, hold, fd, addr, len, saved) } {
            return rc;
        }
    }
    // The kernel reads the address first: a bad pointer or length gets the kernel's own
    // answer (EFAULT, EINVAL, ...) and the library never touches it. The options then go on
    // after a bind that succeeded (SO_REUSEADDR governs the TIME_WAIT this socket will
    // leave) or before a second try of one the kernel refused with EADDRINUSE (what the
    // options can change): the same system calls as setting them first.
    // SAFETY: the caller's arguments, as it gave them to bind().
    let rc = unsafe { real::bind()(fd, addr, len) };
    if rc == 0 {
        // The options leave errno alone (and a log line restores it), so it is still what
        // it was before the call, as after any successful bind.
        // SAFETY: the kernel read the address for this bind.
        return unsafe { bound_at_once(cfg, fd, addr, len) };
    }
    // SAFETY: the kernel answered this bind.
    unsafe { bind_failed(cfg, fd, addr, len, rc, saved) }
}

/// A bind the kernel refused: EADDRINUSE is the library's business, anything else is
/// handed back as it came. A call of its own, so the hook keeps nothing of it across the
/// real `bind`.
///
/// # Safety
/// As `accepted_address`; the kernel answered this bind.
#[cold]
#[inline(never)]
unsafe fn bind_failed(
    cfg: &Config,
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
    rc: c_int,
    saved: c_int,
) -> c_int {
    if errno::get() != libc::EADDRINUSE {
        return rc;
    }
    // SAFETY: the kernel read the address before answering EADDRINUSE.
    let (rc, err) = unsafe { refused(cfg, fd, addr, len) };
    errno::set(if rc == 0 { saved } else { err });
    rc
}

/// The port of the caller's address, read as `accepted_address` reads it (None where it
/// gives None): all a successful bind's decision needs.
///
/// # Safety
/// As `accepted_address`.
#[inline(always)]
unsafe fn accepted_port(addr: *const sockaddr, len: socklen_t) -> Option<u16> {
    let n = (len as usize).min(endpoint::DECODED_MAX);
    if addr.is_null() {
        return None;
    }
    // SAFETY: as in accepted_address.
    let bytes = unsafe { core::slice::from_raw_parts(addr.cast::<u8>(), n) };
    endpoint::decode_port(bytes, handover::abi(), true)
}

/// After a bind that succeeded at once. In the usual configuration
/// (`decision::tcp_addr_only`) and a socket the table knows, decided and done here without
/// a call, so that nothing needs saving: TCP on a wanted port gets SO_REUSEADDR, anything
/// else nothing. Everything else goes on in `bound` (a tail call). Returns the successful
/// bind's 0.
///
/// # Safety
/// As `accepted_address`.
#[inline(never)]
unsafe fn bound_at_once(cfg: &Config, fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    #[cfg(target_os = "linux")]
    if state::tcp_addr_only() && len >= 4 && !addr.is_null() {
        match socket_kinds::is_tcp(fd) {
            Some(true) => {
                // SAFETY: the kernel read `len` (at least 4) bytes there for this bind.
                let [family, port] = unsafe { addr.cast::<[u16; 2]>().read_unaligned() };
                // The family's length is checked as the full decoding checks it (a stale
                // table entry can name a packet socket, which takes any family); AF_UNSPEC
                // (an AF_INET socket's INADDR_ANY) takes the long way.
                if let Some(port) = endpoint::inet_port_linux(family, port, len as usize) {
                    if decision::port_wanted(cfg, port).is_ok() {
                        let e = set_int(fd, libc::SO_REUSEADDR, 1);
                        if e != 0 {
                            // SAFETY: the caller's promise.
                            unsafe { option_failed(addr, len, "SO_REUSEADDR", e) };
                        }
                    }
                    return 0;
                }
            }
            Some(false) => return 0,
            None => {}
        }
    }
    // SAFETY: the caller's promise.
    unsafe { bound_in_full(cfg, fd, addr, len) }
}

/// # Safety
/// As `accepted_address`.
#[cold]
#[inline(never)]
unsafe fn bound_in_full(cfg: &Config, fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { bound(cfg, fd, addr, len) };
    0
}

/// After a bind that succeeded at once, the long way (any configuration, a socket the table
/// does not know, lines to log): the options, for the TIME_WAIT and sharing to come. The
/// port and the socket's kind decide; the address is decoded whole only for a line of log.
///
/// # Safety
/// As `accepted_address`.
#[inline(always)]
unsafe fn bound(cfg: &Config, fd: c_int, addr: *const sockaddr, len: socklen_t) {
    // SAFETY: the caller's promise.
    let Some(port) = (unsafe { accepted_port(addr, len) }) else {
        return;
    };
    // Unlisted ports are decided before anything else is looked at: they pay one lookup.
    if let Err(why) = decision::port_wanted(cfg, port) {
        if report::logs(Level::Debug) {
            // SAFETY: the caller's promise.
            unsafe { log_left(addr, len, None, why) };
        }
        return;
    }
    let Some(transport) = socket_kinds::transport(fd) else {
        if report::logs(Level::Debug) {
            // SAFETY: the caller's promise.
            unsafe { log_left(addr, len, None, LeaveReason::NotTcpOrUdp) };
        }
        return;
    };
    // Hold mode was tried before the bind; here only the options are left to decide.
    match decision::decide_for_wanted_port(cfg, transport) {
        Decision::Apply(o) => {
            // SAFETY: the caller's promise.
            let all_set = unsafe { apply(fd, &o, addr, len) };
            if all_set && report::logs(Level::Info) {
                // SAFETY: the caller's promise.
                unsafe { log_applied(addr, len, transport, &o) };
            }
        }
        Decision::Leave(why) => {
            if report::logs(Level::Debug) {
                // SAFETY: the caller's promise.
                unsafe { log_left(addr, len, Some(transport), why) };
            }
        }
    }
}

/// # Safety
/// As `accepted_address`.
#[cold]
#[inline(never)]
unsafe fn log_left(
    addr: *const sockaddr,
    len: socklen_t,
    transport: Option<Transport>,
    why: LeaveReason,
) {
    // SAFETY: the caller's promise.
    if let Some(a) = unsafe { accepted_address(addr, len) } {
        report::left(&a.endpoint, transport, why);
    }
}

/// # Safety
/// As `accepted_address`.
#[cold]
#[inline(never)]
unsafe fn log_applied(addr: *const sockaddr, len: socklen_t, transport: Transport, o: &Options) {
    // SAFETY: the caller's promise.
    if let Some(a) = unsafe { accepted_address(addr, len) } {
        report::applied(&a.endpoint, transport, o);
    }
}

/// A bind the kernel refused with EADDRINUSE: with the options it may pass (TIME_WAIT, a
/// SO_REUSEPORT group); if not, wait, take over and explain as configured.
///
/// # Safety
/// As `accepted_address`; `addr` stays the caller's, for the tries again.
#[cold]
#[inline(never)]
unsafe fn refused(
    cfg: &Config,
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> (c_int, c_int) {
    let in_use = (-1, libc::EADDRINUSE);
    // SAFETY: the caller's promise.
    let Some(a) = (unsafe { accepted_address(addr, len) }) else {
        return in_use;
    };
    let ep = a.endpoint;
    let transport = socket_kinds::transport(fd);
    // A socket passed by a service manager (LISTEN_FDS) holds this address: it is what the
    // program's bind was meant to make.
    if let (Some(act), Some(t)) = (state::activation(), transport) {
        if activation::adopt(act, fd, &ep, t) {
            return (0, 0);
        }
    }
    if decision::port_wanted(cfg, ep.port()).is_err() {
        return in_use;
    }
    let Some(transport) = transport else {
        return in_use;
    };
    if !decision::in_scope(cfg, transport) {
        return in_use;
    }
    let options = match decision::decide(cfg, transport, ep.port()) {
        Decision::Apply(o) => o,
        Decision::Leave(why) => {
            report::left(&ep, Some(transport), why);
            Options::NONE
        }
    };
    let mut attempt = || {
        // SAFETY: the caller's bind() again, with its own arguments.
        let rc = unsafe { real::bind()(fd, addr, len) };
        (rc, if rc == 0 { 0 } else { errno::get() })
    };
    let mut result = in_use;
    if options.relax_bind() || options.linger.is_some() {
        // SAFETY: the caller's promise.
        unsafe { apply(fd, &options, addr, len) };
        if options.relax_bind() {
            result = attempt();
        }
    }
    if result.0 == 0 {
        report::applied(&ep, transport, &options);
        if options.port && report::logs(Level::Warn) {
            addr_in_use::announce_sharing(&ep, transport, handover::command_pid());
        }
        return result;
    }
    if result.1 != libc::EADDRINUSE {
        return result;
    }
    let failed = addr_in_use::Failed {
        ep: &ep,
        transport,
        had_addr: options.addr,
        skip: &[handover::command_pid()],
    };
    addr_in_use::after(cfg, &failed, &mut attempt)
}

/// Hold mode: a TCP bind to a held port is answered from the command's socket. None to bind
/// as without hold. The address is copied with a system call that fails cleanly on a bad
/// pointer, since here it must be read before any bind.
///
/// # Safety
/// `addr` and `len` are the caller's bind() arguments (they are only ever copied through
/// the kernel, or passed on to the real bind).
#[inline(never)]
unsafe fn bind_held(
    cfg: &Config,
    hold: &Hold,
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
    saved: c_int,
) -> Option<c_int> {
    if socket_kinds::transport(fd) != Some(Transport::Tcp) || len as usize > SOCKADDR_MAX {
        return None;
    }
    let family = handover::replaceable(fd)?;
    let mut buf = [0u8; SOCKADDR_MAX];
    let n = len as usize;
    if sys::read_own_memory(buf.get_mut(..n)?, addr as usize) != n as isize {
        // EFAULT: a bad pointer, which the real bind reports. Anything else means the copy
        // itself is refused here (a seccomp filter): hold mode cannot work, and says so once.
        let why = errno::get();
        if why != libc::EFAULT {
            handover::cannot_read_addresses(why);
        }
        errno::set(saved);
        return None;
    }
    let a = endpoint::decode(buf.get(..n)?, handover::abi(), family == libc::AF_INET)?;
    let ep = a.endpoint;
    if decision::plan(cfg, Some(Transport::Tcp), ep.port()) != Plan::Hold
        || handover::family_of(&ep) != family
    {
        errno::set(saved);
        return None;
    }
    let request = Request {
        endpoint: ep,
        v6only: ep.is_v6() && handover::v6only(fd),
        scope_id: a.scope_id,
        reuseport: handover::reuseport(fd),
    };
    let outcome = handover::take(hold, fd, &request);
    let (rc, err) = match outcome {
        handover::Outcome::Installed => (0, 0),
        handover::Outcome::Failed(libc::EADDRINUSE) => {
            // Another live instance has the socket, or the command could not bind it yet
            // (an instance not under hold is still shutting down): wait, take over and
            // explain as for any bind, asking the command again each time.
            let mut attempt = || match handover::take(hold, fd, &request) {
                handover::Outcome::Installed => (0, 0),
                handover::Outcome::Failed(e) => (-1, e),
                handover::Outcome::Unavailable => {
                    // SAFETY: the caller's bind(), with its own arguments.
                    let rc = unsafe { real::bind()(fd, addr, len) };
                    (rc, if rc == 0 { 0 } else { errno::get() })
                }
            };
            let failed = addr_in_use::Failed {
                ep: &ep,
                transport: Transport::Tcp,
                had_addr: true,
                skip: &[handover::command_pid()],
            };
            addr_in_use::after(cfg, &failed, &mut attempt)
        }
        handover::Outcome::Failed(e) => (-1, e),
        handover::Outcome::Unavailable => {
            errno::set(saved);
            return None;
        }
    };
    errno::set(if rc == 0 { saved } else { err });
    Some(rc)
}

/// Sets an integer socket option: 0, or the error number (errno is left alone).
fn set_int(fd: c_int, name: c_int, v: c_int) -> c_int {
    sys::set_option(fd, libc::SOL_SOCKET, name, &v)
}

#[cfg(not(target_vendor = "apple"))]
const LINGER_OPTION: (c_int, &str) = (libc::SO_LINGER, "SO_LINGER");
// macOS counts SO_LINGER in clock ticks; SO_LINGER_SEC takes seconds, as asked.
#[cfg(target_vendor = "apple")]
const LINGER_OPTION: (c_int, &str) = (libc::SO_LINGER_SEC, "SO_LINGER_SEC");

/// One setsockopt per option asked, the floor; a failure is reported and the bind goes on.
/// Whether every option was set (only then is a line of what was set logged).
///
/// # Safety
/// As `accepted_address` (the address is decoded only to report a failure).
#[inline(always)]
unsafe fn apply(fd: c_int, o: &Options, addr: *const sockaddr, len: socklen_t) -> bool {
    let mut all_set = true;
    if o.addr {
        let e = set_int(fd, libc::SO_REUSEADDR, 1);
        if e != 0 {
            all_set = false;
            // SAFETY: the caller's promise.
            unsafe { option_failed(addr, len, "SO_REUSEADDR", e) };
        }
    }
    if o.port {
        let e = set_int(fd, libc::SO_REUSEPORT, 1);
        if e != 0 {
            all_set = false;
            // SAFETY: the caller's promise.
            unsafe { option_failed(addr, len, "SO_REUSEPORT", e) };
        }
    }
    if let Some(seconds) = o.linger {
        let l = libc::linger {
            l_onoff: 1,
            l_linger: seconds as c_int,
        };
        let e = sys::set_option(fd, libc::SOL_SOCKET, LINGER_OPTION.0, &l);
        if e != 0 {
            all_set = false;
            // SAFETY: the caller's promise.
            unsafe { option_failed(addr, len, LINGER_OPTION.1, e) };
        }
    }
    all_set
}

/// # Safety
/// As `accepted_address`.
#[cold]
#[inline(never)]
unsafe fn option_failed(addr: *const sockaddr, len: socklen_t, name: &str, errno: c_int) {
    // SAFETY: the caller's promise.
    if let Some(a) = unsafe { accepted_address(addr, len) } {
        report::option_failed(&a.endpoint, name, errno);
    }
}

/// The hooks' addresses, which `deepbind` writes into a DEEPBIND object's GOT: `socket`,
/// `bind`, `close`, `dup`, `dup2`, `dup3`. Computed from the program counter: taking the
/// address of an exported function the usual way reads it from a GOT entry of the
/// library's own (the compiler allows for another definition taking its place), and each
/// such entry is a relocation the loader applies at every exec. The linker binds these
/// references within the library (`-Bsymbolic-functions`, build.rs).
#[cfg(all(
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub fn addresses() -> [usize; 6] {
    macro_rules! address {
        ($f:path) => {{
            let at: usize;
            // SAFETY: computes an address, reads and writes nothing.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                core::arch::asm!("lea {0}, [rip + {1}]", out(reg) at, sym $f, options(pure, nomem, nostack));
            }
            // SAFETY: as above.
            #[cfg(target_arch = "aarch64")]
            unsafe {
                core::arch::asm!(
                    "adrp {0}, {1}",
                    "add {0}, {0}, :lo12:{1}",
                    out(reg) at,
                    sym $f,
                    options(pure, nomem, nostack)
                );
            }
            at
        }};
    }
    [
        address!(reuse_socket),
        address!(reuse_bind),
        address!(reuse_close),
        address!(reuse_dup),
        address!(reuse_dup2),
        address!(reuse_dup3),
    ]
}

#[cfg(target_vendor = "apple")]
mod interpose {
    use super::*;
    use core::ffi::c_void;

    // The names programs call, declared here rather than taken from the libc crate: on
    // x86_64 macOS the crate binds `close` to `close$NOCANCEL`, and interposing that would
    // leave every program's `close` alone.
    extern "C" {
        fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int;
        fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
        fn close(fd: c_int) -> c_int;
        fn dup(fd: c_int) -> c_int;
        fn dup2(old: c_int, new: c_int) -> c_int;
    }

    #[repr(C)]
    pub struct Interpose {
        replacement: *const c_void,
        original: *const c_void,
    }
    // SAFETY: read-only function addresses.
    unsafe impl Sync for Interpose {}

    #[used]
    #[link_section = "__DATA,__interpose"]
    static INTERPOSE: [Interpose; 5] = [
        Interpose {
            replacement: reuse_socket as *const c_void,
            original: socket as *const c_void,
        },
        Interpose {
            replacement: reuse_bind as *const c_void,
            original: bind as *const c_void,
        },
        Interpose {
            replacement: reuse_close as *const c_void,
            original: close as *const c_void,
        },
        Interpose {
            replacement: reuse_dup as *const c_void,
            original: dup as *const c_void,
        },
        Interpose {
            replacement: reuse_dup2 as *const c_void,
            original: dup2 as *const c_void,
        },
    ];
}
