//! Reaching objects loaded with `dlopen(RTLD_DEEPBIND)` (glibc, x86_64 and aarch64).
//!
//! An object loaded with RTLD_DEEPBIND looks up its symbols in itself and its own
//! dependencies (libc among them) before the global scope, where a preloaded library sits:
//! PHP loads every extension so, and `socket_bind()` in a PHP daemon went straight to
//! libc's `bind`. After such a `dlopen` returns, the import slots (GOT entries) of the
//! object it returned that name the hooked functions and hold a definition after this
//! library (libc's, or another interposer's) are pointed at the hooks, as the dynamic linker
//! would have done without the flag. Nothing else changes: only imports of exactly these
//! names (never a function the object or its own dependencies define), only slots holding
//! such a definition or a not-yet-bound lazy stub.
//!
//! Only that object: this `dlopen` has returned it, so it is relocated, its RELRO is in
//! place, and it stays loaded (the program holds the reference) while it is patched;
//! objects another thread's `dlopen` is loading, or `dlclose` unloading, at this moment are
//! never touched (patching every loaded object once crashed two threads loading extensions
//! at once; following the object's dependencies by name once read an unloaded one). The
//! tables are read under the loader's lock (`dl_iterate_phdr`), and two patchers take
//! turns. Not reached, then: an object the DEEPBIND object needs, which calls `bind` itself.
//!
//! The caller: glibc searches the RPATH/RUNPATH of the object that called `dlopen`, which
//! for the real `dlopen` called from here would be this library (it has none). Every plain
//! `dlopen` is therefore a tail jump to the real one; a DEEPBIND one given by bare name is
//! searched as glibc would for the true caller (an object of that name already loaded, the
//! caller's RPATH, LD_LIBRARY_PATH, the caller's RUNPATH with `$ORIGIN` expanded, then the
//! loader's cache and default folders), except in secure execution, where it is the plain
//! call. (`$LIB` and `$PLATFORM` are not expanded.)
//!
//! Not reached either: objects loaded with `dlmopen` into another namespace, which get a
//! libc of their own.

use core::ffi::{c_char, c_int, c_void, CStr};
use core::mem::size_of;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::next_symbol::{self, LinkMap, Name, Phdr, Sym};
use crate::{real, state, sys};

/// RTLD_DEEPBIND's bit in dlopen's flags (glibc).
pub const RTLD_DEEPBIND: c_int = 0x0008;

/// An entry of the dynamic section (`Elf64_Dyn`).
#[repr(C)]
struct Dyn {
    d_tag: i64,
    d_un: u64,
}

/// A relocation with addend (`Elf64_Rela`).
#[repr(C)]
struct Rela {
    r_offset: u64,
    r_info: u64,
    r_addend: i64,
}

const DT_NULL: i64 = 0;
const DT_PLTRELSZ: i64 = 2;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_RPATH: i64 = 15;
const DT_JMPREL: i64 = 23;
const DT_RUNPATH: i64 = 29;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_GNU_RELRO: u32 = 0x6474_e552;

#[cfg(target_arch = "x86_64")]
const SLOT_TYPES: [u32; 2] = [6, 7]; // R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT
#[cfg(target_arch = "aarch64")]
const SLOT_TYPES: [u32; 2] = [1025, 1026]; // R_AARCH64_GLOB_DAT, R_AARCH64_JUMP_SLOT

/// The most definitions of one name kept (libc's, and an interposer's or two after this
/// library).
const MAX_DEFS: usize = 8;

/// A hooked name: the hook, and the definitions after this library in load order (libc's,
/// another interposer's), any of which an import slot of a DEEPBIND object may hold.
struct Hook {
    name: &'static [u8],
    hook: usize,
    defs: [usize; MAX_DEFS],
    count: usize,
}

impl Hook {
    fn replaceable(&self, now: usize) -> bool {
        self.defs.iter().take(self.count).any(|&d| d == now)
    }
}

type Hooks = [Hook; 6];

/// The hooked names, each with its hook (definitions found later).
fn hooks() -> Hooks {
    let [socket, bind, close, dup, dup2, dup3] = crate::hooks::addresses();
    let hook = |name: &'static [u8], hook: usize| Hook {
        name,
        hook,
        defs: [0; MAX_DEFS],
        count: 0,
    };
    [
        hook(b"socket", socket),
        hook(b"bind", bind),
        hook(b"close", close),
        hook(b"dup", dup),
        hook(b"dup2", dup2),
        hook(b"dup3", dup3),
    ]
}

/// The slow path of the `dlopen` hook: every call with RTLD_DEEPBIND, and a call that came
/// before the real `dlopen` was known. `caller` is the return address of the program's
/// call, which the hook passes on.
pub unsafe extern "C" fn dlopen_deep(
    file: *const c_char,
    flags: c_int,
    caller: usize,
) -> *mut c_void {
    let Some(real_dlopen) = real::dlopen() else {
        return core::ptr::null_mut();
    };
    let bare = !file.is_null()
        // SAFETY: a file name the program passed, NUL-terminated as dlopen wants it.
        && !unsafe { CStr::from_ptr(file) }.to_bytes().contains(&b'/');
    let handle = if flags & RTLD_DEEPBIND != 0 && bare && !secure_execution() {
        // SAFETY: as above.
        let name = unsafe { CStr::from_ptr(file) }.to_bytes();
        search_as_the_caller(real_dlopen, name, flags, caller)
    } else {
        // SAFETY: the caller's arguments, as it gave them to dlopen().
        unsafe { real_dlopen(file, flags) }
    };
    if !handle.is_null() && flags & RTLD_DEEPBIND != 0 && state::active().is_some() {
        let saved = crate::errno::get();
        reach(handle);
        crate::errno::set(saved);
    }
    handle
}

fn secure_execution() -> bool {
    crate::auxv::get(libc::AT_SECURE) != Some(0)
}

/// dlopen of a bare name as glibc searches it for the true caller (this library's own call
/// would search this library's RUNPATH, none): an object of that name already loaded; then
/// the caller's RPATH (when it has no RUNPATH), LD_LIBRARY_PATH and the caller's RUNPATH,
/// `$ORIGIN` expanded; then the loader's cache and default folders, by the plain call,
/// whose error is the one dlerror() gives when nothing is found.
fn search_as_the_caller(
    real_dlopen: real::DlopenFn,
    name: &[u8],
    flags: c_int,
    caller: usize,
) -> *mut c_void {
    let mut c_name = [0u8; 4096];
    if name.len() >= c_name.len() {
        return core::ptr::null_mut();
    }
    for (d, s) in c_name.iter_mut().zip(name) {
        *d = *s;
    }
    // SAFETY: c_name is NUL-terminated (zeroed past the name).
    let loaded = unsafe { real_dlopen(c_name.as_ptr().cast(), flags | libc::RTLD_NOLOAD) };
    if !loaded.is_null() {
        return loaded;
    }
    if let Some((dynamic, base, object_name)) = object_at(caller) {
        let mut origin = [0u8; 1024];
        let origin_len = origin_of(object_name, caller, &mut origin);
        let origin = origin.get(..origin_len).unwrap_or_default();
        // SAFETY: the caller's object is loaded (its code is running): its dynamic section
        // and string table are mapped.
        let (runpath, rpath) = unsafe { search_paths(dynamic, base) };
        let library_path = crate::state::library_path();
        let lists: [Option<&[u8]>; 3] =
            [rpath.filter(|_| runpath.is_none()), library_path, runpath];
        for list in lists.into_iter().flatten() {
            let found = try_folders(real_dlopen, list, origin, name, flags);
            if !found.is_null() {
                return found;
            }
        }
    }
    // SAFETY: as above.
    unsafe { real_dlopen(c_name.as_ptr().cast(), flags) }
}

/// Tries `name` in each folder of a colon-separated list; the first that loads.
fn try_folders(
    real_dlopen: real::DlopenFn,
    list: &[u8],
    origin: &[u8],
    name: &[u8],
    flags: c_int,
) -> *mut c_void {
    for dir in list.split(|b| *b == b':').take(64) {
        let mut path = [0u8; 4096];
        let mut n = 0;
        let mut push = |bytes: &[u8]| {
            for &b in bytes {
                if let Some(d) = path.get_mut(n) {
                    *d = b;
                    n += 1;
                }
            }
        };
        let expanded = [b"$ORIGIN".as_slice(), b"${ORIGIN}".as_slice()]
            .iter()
            .find_map(|tag| dir.strip_prefix(*tag));
        match expanded {
            Some(rest) => {
                push(origin);
                push(rest);
            }
            None => push(dir),
        }
        if dir.is_empty() {
            push(b".");
        }
        push(b"/");
        push(name);
        if n + 1 >= path.len() {
            continue;
        }
        // SAFETY: path is NUL-terminated (zeroed past n).
        let found = unsafe { real_dlopen(path.as_ptr().cast(), flags) };
        if !found.is_null() {
            return found;
        }
    }
    core::ptr::null_mut()
}

/// The folder of a loaded object's file, into `out` (its length). The program's own from
/// /proc/self/exe (the loader names it ""), and one loaded by a relative path from the
/// kernel's map of this process (glibc fixed `$ORIGIN` when it loaded it, whatever the
/// current folder is now).
fn origin_of(name: &[u8], caller: usize, out: &mut [u8]) -> usize {
    let n = if name.is_empty() {
        let got = sys::readlink(c"/proc/self/exe", out);
        if got <= 0 {
            return 0;
        }
        got as usize
    } else if name.first() == Some(&b'/') {
        for (d, s) in out.iter_mut().zip(name) {
            *d = *s;
        }
        name.len().min(out.len())
    } else {
        crate::procfs::mapped_file(caller, out)
    };
    out.get(..n)
        .and_then(|p| p.iter().rposition(|b| *b == b'/'))
        .unwrap_or(0)
}

/// The RUNPATH and RPATH strings of an object.
///
/// # Safety
/// `dynamic` is a loaded object's mapped dynamic section, `base` its load address.
unsafe fn search_paths(
    dynamic: *const Dyn,
    base: usize,
) -> (Option<&'static [u8]>, Option<&'static [u8]>) {
    let (mut strtab, mut runpath, mut rpath) = (0usize, None, None);
    let mut d = dynamic;
    for _ in 0..4096 {
        // SAFETY: within the section, which ends in DT_NULL (the caller's promise).
        let e = unsafe { &*d };
        match e.d_tag {
            DT_NULL => break,
            DT_STRTAB => strtab = address(e.d_un, base),
            DT_RUNPATH => runpath = Some(e.d_un as usize),
            DT_RPATH => rpath = Some(e.d_un as usize),
            _ => {}
        }
        // SAFETY: as above.
        d = unsafe { d.add(1) };
    }
    if strtab == 0 {
        return (None, None);
    }
    // SAFETY: offsets into the object's string table, where NUL-terminated strings sit.
    let string = |at: usize| unsafe { CStr::from_ptr((strtab + at) as *const c_char) }.to_bytes();
    (runpath.map(string), rpath.map(string))
}

/// An address from a dynamic section: glibc has already added the load address to most of
/// them in place, other loaders have not.
fn address(d_ptr: u64, base: usize) -> usize {
    let p = d_ptr as usize;
    if p < base {
        base + p
    } else {
        p
    }
}

type Callback = unsafe extern "C" fn(*mut libc::dl_phdr_info, usize, *mut c_void) -> c_int;
type IterateFn = unsafe extern "C" fn(Callback, *mut c_void) -> c_int;

/// libc's dl_iterate_phdr, looked up on first use (only DEEPBIND dlopens need it). It holds
/// the loader's lock while it calls back: no object it shows is unmapped meanwhile.
fn iterate(callback: Callback, data: *mut c_void) {
    let p = next_symbol::next(&Name::new(b"dl_iterate_phdr"));
    if p != 0 {
        // SAFETY: p is libc's dl_iterate_phdr; the callbacks given read only the objects'
        // own headers and tables.
        unsafe { core::mem::transmute::<usize, IterateFn>(p)(callback, data) };
    }
}

/// The name and program headers of a loaded object, from dl_iterate_phdr's report.
///
/// # Safety
/// `info` is what dl_iterate_phdr passed.
unsafe fn object_of<'a>(info: *mut libc::dl_phdr_info) -> Option<(&'a [u8], &'a [Phdr], usize)> {
    // SAFETY: the caller's promise.
    unsafe {
        let info = &*info;
        if info.dlpi_phdr.is_null() {
            return None;
        }
        let phdrs = core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
        let name = if info.dlpi_name.is_null() {
            &b""[..]
        } else {
            CStr::from_ptr(info.dlpi_name).to_bytes()
        };
        Some((name, phdrs, info.dlpi_addr as usize))
    }
}

/// The loaded object whose code holds `addr`: its dynamic section, load address and name.
fn object_at(addr: usize) -> Option<(*const Dyn, usize, &'static [u8])> {
    struct Find {
        addr: usize,
        found: Option<(*const Dyn, usize, &'static [u8])>,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info, and data is the Find lent to it.
        unsafe {
            let f = &mut *(data as *mut Find);
            let Some((name, phdrs, base)) = object_of(info) else {
                return 0;
            };
            if !contains(phdrs, base, f.addr) {
                return 0;
            }
            if let Some(d) = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) {
                f.found = Some(((base + d.p_vaddr as usize) as *const Dyn, base, name));
            }
            1
        }
    }
    let mut f = Find { addr, found: None };
    iterate(visit, (&mut f as *mut Find).cast());
    f.found
}

/// Serializes patchers: two threads' DEEPBIND dlopens would otherwise put a page back to
/// read-only under each other's write.
#[link_section = ".data"]
static PATCHING: AtomicBool = AtomicBool::new(false);

/// Points the hooked imports of the object `handle` names at the hooks, where they hold a
/// definition after this library (libc's, or another interposer's). Only that object: this
/// dlopen returned it, so it is relocated, its RELRO in place, and it stays loaded while
/// this call lasts (the program holds the reference). Idempotent: a slot already right is
/// not touched.
fn reach(handle: *mut c_void) {
    // SAFETY: glibc's dlopen handle is the object's link_map, whose first fields are public.
    let base = unsafe { (*(handle as *const LinkMap)).l_addr };
    let mut turns = 0u32;
    while PATCHING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        turns += 1;
        if turns > 100_000 {
            return; // the other patcher never finished (it cannot be this thread's)
        }
        sys::yield_now();
    }
    let mut job = Job {
        hooks: hooks(),
        target: base,
        after_me: false,
    };
    // First the definitions after this library, then the object: both under the loader's
    // lock, so no object is unmapped while its tables are read.
    iterate(find_definitions, (&mut job as *mut Job).cast());
    iterate(patch_target, (&mut job as *mut Job).cast());
    PATCHING.store(false, Ordering::Release);
}

struct Job {
    hooks: Hooks,
    /// The load address of the object to patch.
    target: usize,
    after_me: bool,
}

unsafe extern "C" fn find_definitions(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info for a loaded, listed object (mapped while
    // its lock is held), and data is the Job reach() lent it.
    unsafe {
        let job = &mut *(data as *mut Job);
        let Some((_, phdrs, base)) = object_of(info) else {
            return 0;
        };
        if contains(phdrs, base, crate::hooks::addresses()[1]) {
            job.after_me = true;
            return 0;
        }
        if !job.after_me {
            return 0;
        }
        let Some(dynamic) = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) else {
            return 0;
        };
        let Some(table) =
            next_symbol::Table::read((base + dynamic.p_vaddr as usize) as *const _, base)
        else {
            return 0;
        };
        for h in job.hooks.iter_mut() {
            let def = table.lookup(&Name::new(h.name));
            if def != 0 && h.count < MAX_DEFS {
                if let Some(slot) = h.defs.get_mut(h.count) {
                    *slot = def;
                    h.count += 1;
                }
            }
        }
        0
    }
}

unsafe extern "C" fn patch_target(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info for a loaded object, and data is the Job
    // reach() lent it. Only the job's object (loaded, relocated) is read past its info.
    unsafe {
        let job = &*(data as *const Job);
        let Some((name, phdrs, base)) = object_of(info) else {
            return 0;
        };
        if base != job.target || skipped(name) {
            return 0;
        }
        if contains(phdrs, base, crate::hooks::addresses()[1]) {
            return 0; // this library
        }
        let Some(dynamic) = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) else {
            return 0;
        };
        let relro = phdrs.iter().find(|p| p.p_type == PT_GNU_RELRO).map(|p| {
            let start = base + p.p_vaddr as usize;
            (start, start + p.p_memsz as usize)
        });
        let obj = Object { phdrs, base, relro };
        obj.patch((base + dynamic.p_vaddr as usize) as *const Dyn, &job.hooks);
        1
    }
}

/// libc and the dynamic linker keep their own bindings: their internal calls are theirs.
fn skipped(name: &[u8]) -> bool {
    let file = name.rsplit(|b| *b == b'/').next().unwrap_or(name);
    file.starts_with(b"libc.so")
        || file.starts_with(b"ld-linux")
        || file.starts_with(b"ld64.so")
        || file.starts_with(b"linux-vdso")
        || file.starts_with(b"linux-gate")
}

fn contains(phdrs: &[Phdr], base: usize, addr: usize) -> bool {
    phdrs.iter().any(|p| {
        let start = base + p.p_vaddr as usize;
        p.p_type == PT_LOAD && addr >= start && addr < start + p.p_memsz as usize
    })
}

struct Object<'a> {
    phdrs: &'a [Phdr],
    base: usize,
    relro: Option<(usize, usize)>,
}

impl Object<'_> {
    fn address(&self, d_ptr: u64) -> usize {
        address(d_ptr, self.base)
    }

    unsafe fn patch(&self, dynamic: *const Dyn, hooks: &Hooks) {
        // SAFETY: dynamic is the object's mapped PT_DYNAMIC array, ending in DT_NULL; the
        // relocation tables and the symbol and string tables it names are the loader's own, mapped;
        // every index comes from them; each slot written is one the loader itself wrote.
        unsafe {
            let (mut symtab, mut strtab) = (0usize, 0usize);
            let (mut rela, mut relasz, mut jmprel, mut pltrelsz) = (0usize, 0usize, 0usize, 0usize);
            let mut d = dynamic;
            for _ in 0..4096 {
                let e = &*d;
                match e.d_tag {
                    DT_NULL => break,
                    DT_SYMTAB => symtab = self.address(e.d_un),
                    DT_STRTAB => strtab = self.address(e.d_un),
                    DT_RELA => rela = self.address(e.d_un),
                    DT_RELASZ => relasz = e.d_un as usize,
                    DT_JMPREL => jmprel = self.address(e.d_un),
                    DT_PLTRELSZ => pltrelsz = e.d_un as usize,
                    _ => {}
                }
                d = d.add(1);
            }
            if symtab == 0 || strtab == 0 {
                return;
            }
            for (table, bytes) in [(rela, relasz), (jmprel, pltrelsz)] {
                if table == 0 {
                    continue;
                }
                let relocs =
                    core::slice::from_raw_parts(table as *const Rela, bytes / size_of::<Rela>());
                for r in relocs {
                    if !SLOT_TYPES.contains(&((r.r_info & 0xffff_ffff) as u32)) {
                        continue;
                    }
                    let sym = &*(symtab as *const Sym).add((r.r_info >> 32) as usize);
                    if sym.st_shndx != 0 {
                        continue; // the object defines it: its own business
                    }
                    let name =
                        CStr::from_ptr((strtab + sym.st_name as usize) as *const c_char).to_bytes();
                    let Some(h) = hooks.iter().find(|h| h.name == name) else {
                        continue;
                    };
                    let hook = h.hook;
                    let slot = (self.base + r.r_offset as usize) as *mut usize;
                    let now = core::ptr::read_volatile(slot);
                    // Only libc's definition, or a lazy stub of the object itself, is replaced.
                    // A definition after this library (libc's, an interposer's), or a lazy
                    // stub of the object itself; never a definition of its own dependencies.
                    if now == hook || !(h.replaceable(now) || contains(self.phdrs, self.base, now))
                    {
                        continue;
                    }
                    self.write(slot, hook);
                }
            }
        }
    }

    /// Writes one slot, lifting RELRO's write protection from its page for that moment. The
    /// loader protects RELRO in whole pages only (its last, partial page stays writable), so
    /// only those pages are put back read-only.
    unsafe fn write(&self, slot: *mut usize, value: usize) {
        // SAFETY: slot is an import slot of a loaded object (patch's promise); its page is
        // made writable for the write when RELRO protects it, as the loader does.
        unsafe {
            let addr = slot as usize;
            let size = sys::page_size();
            let page = addr & !(size - 1);
            let protected = self
                .relro
                .is_some_and(|(s, e)| page >= s & !(size - 1) && page < e & !(size - 1));
            if protected
                && sys::protect(
                    page as *mut c_void,
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                ) != 0
            {
                return;
            }
            core::ptr::write_volatile(slot, value);
            if protected {
                sys::protect(page as *mut c_void, size, libc::PROT_READ);
            }
        }
    }
}
