//! Reaching objects loaded with `dlopen(RTLD_DEEPBIND)` (glibc, x86_64 and aarch64).
//!
//! An object loaded with RTLD_DEEPBIND looks up its symbols in itself and its own
//! dependencies (libc among them) before the global scope, where a preloaded library sits:
//! PHP loads every extension so, and `socket_bind()` in a PHP daemon went straight to
//! libc's `bind`. After such a `dlopen` returns, the import slots (GOT entries) of the
//! object it returned and of that object's dependencies that name the hooked functions and
//! hold libc's definition are pointed at the hooks, as the dynamic linker would have done
//! without the flag. Nothing else they resolve changes: only imports of exactly these names
//! (never a function an object defines itself), only slots holding the next definition
//! (libc's) or a not-yet-bound lazy stub.
//!
//! Only those objects: this `dlopen` has returned, so they are relocated and their RELRO is
//! in place; an object another thread's `dlopen` is loading at this moment is not, and the
//! loader may be writing its slots and setting its page protection (patching every loaded
//! object once crashed two threads loading extensions at once). Two patchers take turns.
//!
//! The caller: glibc searches the RPATH/RUNPATH of the object that called `dlopen`, which
//! for the real `dlopen` called from here is this library (it has none). Every plain
//! `dlopen` is therefore a tail jump to the real one; a DEEPBIND one given by bare name
//! that is not found so is tried again in each folder of the true caller's RUNPATH (else
//! RPATH), `$ORIGIN` expanded, as glibc would have searched them.
//!
//! Not reached: objects loaded with `dlmopen` into another namespace, which get a libc of
//! their own.

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
const DT_NEEDED: i64 = 1;
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

/// The most objects one DEEPBIND dlopen's closure is followed to.
const MAX_OBJECTS: usize = 64;

type Hooks = [(&'static [u8], usize, usize); 6];

/// The hooked names, each with the hook and the definition it would otherwise reach.
fn hooks() -> Hooks {
    use crate::hooks::*;
    [
        (
            b"socket",
            reuse_socket as *const () as usize,
            real::socket() as usize,
        ),
        (
            b"bind",
            reuse_bind as *const () as usize,
            real::bind() as usize,
        ),
        (
            b"close",
            reuse_close as *const () as usize,
            real::close() as usize,
        ),
        (
            b"dup",
            reuse_dup as *const () as usize,
            real::dup() as usize,
        ),
        (
            b"dup2",
            reuse_dup2 as *const () as usize,
            real::dup2() as usize,
        ),
        (
            b"dup3",
            reuse_dup3 as *const () as usize,
            real::dup3() as usize,
        ),
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
    // SAFETY: the caller's arguments, as it gave them to dlopen().
    let mut handle = unsafe { real_dlopen(file, flags) };
    if handle.is_null() && flags & RTLD_DEEPBIND != 0 && !file.is_null() {
        // SAFETY: a file name the program passed, NUL-terminated as dlopen wants it.
        let name = unsafe { CStr::from_ptr(file) }.to_bytes();
        if !name.contains(&b'/') {
            handle = with_callers_paths(real_dlopen, name, flags, caller);
        }
    }
    if !handle.is_null() && flags & RTLD_DEEPBIND != 0 && state::active().is_some() {
        let saved = crate::errno::get();
        reach(handle);
        crate::errno::set(saved);
    }
    handle
}

/// dlopen's search of the caller's RUNPATH (else RPATH) folders, for a bare name: the first
/// folder that holds a loadable `name` wins.
fn with_callers_paths(
    real_dlopen: real::DlopenFn,
    name: &[u8],
    flags: c_int,
    caller: usize,
) -> *mut c_void {
    let mut found = core::ptr::null_mut();
    let mut origin = [0u8; 1024];
    let Some((dynamic, base, object_name)) = object_at(caller) else {
        return found;
    };
    let origin_len = origin_of(object_name, &mut origin);
    // SAFETY: the caller's object is loaded (its code is running): its dynamic section and
    // string table are mapped.
    let paths = unsafe { search_path(dynamic, base) };
    let Some(paths) = paths else {
        return found;
    };
    for dir in paths.split(|b| *b == b':').take(64) {
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
                push(origin.get(..origin_len).unwrap_or_default());
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
        found = unsafe { real_dlopen(path.as_ptr().cast(), flags) };
        if !found.is_null() {
            break;
        }
    }
    found
}

/// The folder of a loaded object's file, into `out` (its length); the program's own from
/// /proc/self/exe, since the loader names it "".
fn origin_of(name: &[u8], out: &mut [u8]) -> usize {
    let n = if name.is_empty() {
        let got = sys::readlink(c"/proc/self/exe", out);
        if got <= 0 {
            return 0;
        }
        got as usize
    } else {
        for (d, s) in out.iter_mut().zip(name) {
            *d = *s;
        }
        name.len().min(out.len())
    };
    out.get(..n)
        .and_then(|p| p.iter().rposition(|b| *b == b'/'))
        .unwrap_or(0)
}

/// The RUNPATH string of an object, else its RPATH.
///
/// # Safety
/// `dynamic` is a loaded object's mapped dynamic section, `base` its load address.
unsafe fn search_path(dynamic: *const Dyn, base: usize) -> Option<&'static [u8]> {
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
    let at = runpath.or(rpath)?;
    if strtab == 0 {
        return None;
    }
    // SAFETY: an offset into the object's string table, where a NUL-terminated string sits.
    Some(unsafe { CStr::from_ptr((strtab + at) as *const c_char) }.to_bytes())
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

type IterateFn = unsafe extern "C" fn(
    unsafe extern "C" fn(*mut libc::dl_phdr_info, usize, *mut c_void) -> c_int,
    *mut c_void,
) -> c_int;

/// libc's dl_iterate_phdr, looked up on first use (only DEEPBIND dlopens need it).
fn iterate(
    callback: unsafe extern "C" fn(*mut libc::dl_phdr_info, usize, *mut c_void) -> c_int,
    data: *mut c_void,
) {
    let p = next_symbol::next(&Name::new(b"dl_iterate_phdr"));
    if p != 0 {
        // SAFETY: p is libc's dl_iterate_phdr; the callbacks given read only the objects'
        // own headers and tables.
        unsafe { core::mem::transmute::<usize, IterateFn>(p)(callback, data) };
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
            let info = &*info;
            if info.dlpi_phdr.is_null() {
                return 0;
            }
            let phdrs = core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
            let base = info.dlpi_addr as usize;
            if !contains(phdrs, base, f.addr) {
                return 0;
            }
            let name = if info.dlpi_name.is_null() {
                &b""[..]
            } else {
                CStr::from_ptr(info.dlpi_name).to_bytes()
            };
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
static PATCHING: AtomicBool = AtomicBool::new(false);

/// Points the hooked imports of the object `handle` names and of its dependencies (but
/// libc, the dynamic linker and this library) at the hooks. Idempotent: a slot already
/// right is not touched.
fn reach(handle: *mut c_void) {
    let mut objects = [0usize; MAX_OBJECTS];
    let n = closure(handle as *const LinkMap, &mut objects);
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
        objects: objects.get(..n).unwrap_or_default(),
    };
    iterate(visit, (&mut job as *mut Job<'_>).cast());
    PATCHING.store(false, Ordering::Release);
}

struct Job<'a> {
    hooks: Hooks,
    /// The load addresses of the objects to patch.
    objects: &'a [usize],
}

/// The object glibc's `handle` is (a `link_map`) and every object it needs, transitively,
/// as load addresses; how many.
fn closure(handle: *const LinkMap, out: &mut [usize; MAX_OBJECTS]) -> usize {
    let mut maps = [core::ptr::null::<LinkMap>(); MAX_OBJECTS];
    let mut n = 0;
    if let Some(first) = maps.first_mut() {
        *first = handle;
        n = 1;
    }
    let mut i = 0;
    while i < n {
        let Some(&m) = maps.get(i) else { break };
        i += 1;
        // SAFETY: m is the handle dlopen returned, or an object found in the loader's list
        // by the name one of them needs: both loaded, relocated, mapped.
        let lm = unsafe { &*m };
        if lm.l_ld.is_null() {
            continue;
        }
        // SAFETY: as above.
        unsafe {
            for_each_needed(lm.l_ld as *const Dyn, lm.l_addr, |needed| {
                let Some(dep) = loaded_named(needed) else {
                    return;
                };
                if !maps.get(..n).unwrap_or_default().contains(&dep) {
                    if let Some(slot) = maps.get_mut(n) {
                        *slot = dep;
                        n += 1;
                    }
                }
            })
        };
    }
    for (o, m) in out.iter_mut().zip(maps.iter().take(n)) {
        // SAFETY: as above.
        *o = unsafe { (**m).l_addr };
    }
    n
}

/// Calls `f` with each DT_NEEDED name of an object.
///
/// # Safety
/// `dynamic` is a loaded, relocated object's dynamic section; `base` its load address.
unsafe fn for_each_needed(dynamic: *const Dyn, base: usize, mut f: impl FnMut(&[u8])) {
    let mut strtab = 0usize;
    let mut d = dynamic;
    for _ in 0..4096 {
        // SAFETY: within the section, which ends in DT_NULL (the caller's promise).
        let e = unsafe { &*d };
        if e.d_tag == DT_NULL {
            break;
        }
        if e.d_tag == DT_STRTAB {
            strtab = address(e.d_un, base);
        }
        // SAFETY: as above.
        d = unsafe { d.add(1) };
    }
    if strtab == 0 {
        return;
    }
    let mut d = dynamic;
    for _ in 0..4096 {
        // SAFETY: as above.
        let e = unsafe { &*d };
        if e.d_tag == DT_NULL {
            break;
        }
        if e.d_tag == DT_NEEDED {
            // SAFETY: an offset into the string table, where a NUL-terminated name sits.
            f(unsafe { CStr::from_ptr((strtab + e.d_un as usize) as *const c_char) }.to_bytes());
        }
        // SAFETY: as above.
        d = unsafe { d.add(1) };
    }
}

/// The loaded object whose file name is `needed` (a NEEDED entry names the file).
fn loaded_named(needed: &[u8]) -> Option<*const LinkMap> {
    let mut found = None;
    next_symbol::for_each_object(|lm| {
        if lm.l_name.is_null() {
            return true;
        }
        // SAFETY: the loader sets an object's name before it puts the object in the list.
        let name = unsafe { CStr::from_ptr(lm.l_name) }.to_bytes();
        let file = name.rsplit(|b| *b == b'/').next().unwrap_or(name);
        if file == needed && !skipped(file) {
            found = Some(lm as *const LinkMap);
            return false;
        }
        true
    });
    found
}

unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info for a loaded object, and data is the Job
    // reach() lent it for this walk. Only the objects of the job (loaded, relocated) are
    // read past their info.
    unsafe {
        let job = &*(data as *const Job<'_>);
        let info = &*info;
        let base = info.dlpi_addr as usize;
        if !job.objects.contains(&base) || info.dlpi_phdr.is_null() {
            return 0;
        }
        let name = if info.dlpi_name.is_null() {
            &b""[..]
        } else {
            CStr::from_ptr(info.dlpi_name).to_bytes()
        };
        if skipped(name) {
            return 0;
        }
        let phdrs = core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
        if contains(phdrs, base, crate::hooks::reuse_bind as *const () as usize) {
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
        0
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
                    let Some(&(_, hook, next)) = hooks.iter().find(|(n, _, _)| *n == name) else {
                        continue;
                    };
                    let slot = (self.base + r.r_offset as usize) as *mut usize;
                    let now = core::ptr::read_volatile(slot);
                    // Only libc's definition, or a lazy stub of the object itself, is replaced.
                    if now == hook || (now != next && !contains(self.phdrs, self.base, now)) {
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
