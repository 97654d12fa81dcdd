//! Reaching objects loaded with `dlopen(RTLD_DEEPBIND)` (glibc, x86_64 and aarch64).
//!
//! An object loaded with RTLD_DEEPBIND looks up its symbols in itself and its own
//! dependencies (libc among them) before the global scope, where a preloaded library sits:
//! PHP loads every extension so, and `socket_bind()` in a PHP daemon went straight to
//! libc's `bind`. After such a `dlopen` returns, the import slots (GOT entries) of the
//! objects it loaded that name the hooked functions and hold libc's definition are pointed
//! at the hooks, as the dynamic linker would have done without the flag. Nothing else they
//! resolve changes: only imports of exactly these names (never a function an object defines
//! itself), only slots holding the next definition (libc's) or a not-yet-bound lazy stub.
//!
//! Not reached: objects loaded with `dlmopen` into another namespace, which get a libc of
//! their own; and the search for a DEEPBIND object given by bare name uses this library as
//! the caller (its RUNPATH, none) instead of the caller's own RPATH/RUNPATH. Every other
//! `dlopen` is a tail jump to the real one, so glibc still sees its true caller.

use core::ffi::{c_char, c_int, c_void, CStr};
use core::mem::size_of;

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

type Sym = libc::Elf64_Sym;
type Phdr = libc::Elf64_Phdr;

const DT_NULL: i64 = 0;
const DT_PLTRELSZ: i64 = 2;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_JMPREL: i64 = 23;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_GNU_RELRO: u32 = 0x6474_e552;

#[cfg(target_arch = "x86_64")]
const SLOT_TYPES: [u32; 2] = [6, 7]; // R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT
#[cfg(target_arch = "aarch64")]
const SLOT_TYPES: [u32; 2] = [1025, 1026]; // R_AARCH64_GLOB_DAT, R_AARCH64_JUMP_SLOT

/// The hooked names, each with the hook and the definition it would otherwise reach.
fn hooks() -> [(&'static [u8], usize, usize); 6] {
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
/// before the real `dlopen` was known.
pub unsafe extern "C" fn dlopen_deep(file: *const c_char, flags: c_int) -> *mut c_void {
    // SAFETY: the caller's arguments, as it gave them to dlopen().
    unsafe {
        let Some(real_dlopen) = real::dlopen() else {
            return core::ptr::null_mut();
        };
        let handle = real_dlopen(file, flags);
        if !handle.is_null() && flags & RTLD_DEEPBIND != 0 && state::active().is_some() {
            let saved = crate::errno::get();
            reach_loaded_objects();
            crate::errno::set(saved);
        }
        handle
    }
}

/// Points the hooked imports of every loaded object (but libc, the dynamic linker and this
/// library) at the hooks. Idempotent: a slot already right is not touched.
fn reach_loaded_objects() {
    let hooks = hooks();
    // SAFETY: the callback only reads the objects' own headers and tables, and writes
    // import slots as the dynamic linker does.
    unsafe {
        crate::next_symbol::dl_iterate_phdr(
            visit,
            (&hooks as *const [(&[u8], usize, usize); 6])
                .cast_mut()
                .cast(),
        )
    };
}

unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info for a loaded object, and data is the
    // hooks table reach_loaded_objects() lent it for this walk.
    unsafe {
        let hooks = &*(data as *const [(&[u8], usize, usize); 6]);
        let info = &*info;
        let name = if info.dlpi_name.is_null() {
            &b""[..]
        } else {
            CStr::from_ptr(info.dlpi_name).to_bytes()
        };
        if skipped(name) || info.dlpi_phdr.is_null() {
            return 0;
        }
        let phdrs = core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
        let base = info.dlpi_addr as usize;
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
        obj.patch((base + dynamic.p_vaddr as usize) as *const Dyn, hooks);
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
    /// An address from the dynamic section: glibc has already added the load address to
    /// most of them in place, other loaders have not.
    fn address(&self, d_ptr: u64) -> usize {
        let p = d_ptr as usize;
        if p < self.base {
            self.base + p
        } else {
            p
        }
    }

    unsafe fn patch(&self, dynamic: *const Dyn, hooks: &[(&[u8], usize, usize); 6]) {
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
