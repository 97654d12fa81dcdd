//! Finding libc's functions without importing them: the next definition of a name after this
//! library, as `dlsym(RTLD_NEXT)` has it, or the first one in load order, as the loader
//! binds a data reference.
//!
//! Why not import them, or call dlsym: every symbol a library imports is looked up by the
//! loader at every exec, eagerly, about 650 instructions each, and naming libc as NEEDED
//! adds some 2,300 more (mapping checks, version checks). The library names no NEEDED
//! library and imports nothing; the functions it calls through are found here, each on its
//! first use (a walk without a lock or an allocation, so a first call from a signal handler
//! is fine). (dlsym would also tie the library to glibc 2.34's libc or to libdl.)
//!
//! The loaded objects are found as debuggers find them: the program's DT_DEBUG entry points
//! at the loader's `r_debug`, whose `r_map` heads the list of `link_map`s in load order (the
//! global scope's order, for preloaded libraries and the program's own dependencies). The
//! first fields of both structures are the public ABI of `<link.h>` on glibc and musl.
//! Failing DT_DEBUG (a program linked without it), the loader's own `_r_debug` (glibc), or
//! the loader itself as the one object (musl's loader is its libc).
//!
//! In each object, the GNU hash table (else the SysV one) finds the symbol; only a defined
//! function or object in its default (non-hidden) version counts. The hashes of the names
//! looked for are computed at compile time.

use core::ffi::{c_char, c_int};

const DT_NULL: usize = 0;
const DT_HASH: usize = 4;
const DT_STRTAB: usize = 5;
const DT_SYMTAB: usize = 6;
const DT_DEBUG: usize = 21;
const DT_GNU_HASH: usize = 0x6fff_fef5;
const DT_VERSYM: usize = 0x6fff_fff0;
const PT_DYNAMIC: u32 = 2;
const PT_PHDR: u32 = 6;
const STT_OBJECT: u8 = 1;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;

/// An entry of a dynamic section (`Elf64_Dyn`/`Elf32_Dyn`: two machine words).
#[repr(C)]
pub struct Dyn {
    pub d_tag: usize,
    pub d_un: usize,
}

#[cfg(target_pointer_width = "64")]
pub type Sym = libc::Elf64_Sym;
#[cfg(target_pointer_width = "32")]
pub type Sym = libc::Elf32_Sym;
#[cfg(target_pointer_width = "64")]
pub type Phdr = libc::Elf64_Phdr;
#[cfg(target_pointer_width = "32")]
pub type Phdr = libc::Elf32_Phdr;
#[cfg(target_pointer_width = "64")]
type Ehdr = libc::Elf64_Ehdr;
#[cfg(target_pointer_width = "32")]
type Ehdr = libc::Elf32_Ehdr;

/// `struct r_debug`, its first fields.
#[repr(C)]
struct RDebug {
    r_version: c_int,
    r_map: *const LinkMap,
}

/// `struct link_map`, its public fields.
#[repr(C)]
pub struct LinkMap {
    pub l_addr: usize,
    pub l_name: *const c_char,
    pub l_ld: *const Dyn,
    pub l_next: *const LinkMap,
    l_prev: *const LinkMap,
}

/// A name to look for, with its hashes.
#[derive(Clone, Copy)]
pub struct Name {
    pub bytes: &'static [u8],
    gnu: u32,
    sysv: u32,
}

impl Name {
    pub const fn new(bytes: &'static [u8]) -> Name {
        let (mut gnu, mut sysv, mut i) = (5381u32, 0u32, 0);
        while i < bytes.len() {
            // Constant evaluation: an index past the end is a compile error, not a panic.
            #[allow(clippy::indexing_slicing)]
            let c = bytes[i] as u32;
            gnu = gnu.wrapping_mul(33).wrapping_add(c);
            sysv = (sysv << 4).wrapping_add(c);
            let g = sysv & 0xf000_0000;
            sysv = (sysv ^ (g >> 24)) & !g;
            i += 1;
        }
        Name { bytes, gnu, sysv }
    }
}

/// Where a name's definition is taken from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// The first object after this library that defines it: the function this library's
    /// hook stands in front of.
    AfterMe,
    /// The first object in load order, the program included: where the loader would bind a
    /// reference to it (a program's copy of `environ`, say).
    First,
}

/// This library's own dynamic section, which tells its `link_map` from the others.
///
/// Computed from the program counter where the instruction set allows: the address of an
/// `extern` static is read from a GOT entry, which the loader relocates at every exec, but
/// `_DYNAMIC` is the linker's own symbol, always in this object.
fn my_dynamic() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let at: usize;
        // SAFETY: computes an address, reads and writes nothing.
        unsafe {
            core::arch::asm!("lea {}, [rip + _DYNAMIC]", out(reg) at, options(pure, nomem, nostack));
        }
        at
    }
    #[cfg(target_arch = "aarch64")]
    {
        let at: usize;
        // SAFETY: computes an address, reads and writes nothing.
        unsafe {
            core::arch::asm!(
                "adrp {0}, _DYNAMIC",
                "add {0}, {0}, :lo12:_DYNAMIC",
                out(reg) at,
                options(pure, nomem, nostack)
            );
        }
        at
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        extern "C" {
            static _DYNAMIC: [Dyn; 0];
        }
        // Only the address of the linker-defined symbol is taken.
        (&raw const _DYNAMIC) as usize
    }
}

/// The head of the loader's list of loaded objects, or null.
fn loaded_objects() -> *const LinkMap {
    let dbg = program_r_debug().or_else(loader_r_debug).unwrap_or(0);
    if dbg == 0 {
        return core::ptr::null();
    }
    // SAFETY: the loader's r_debug, which lives as long as the process.
    unsafe { (*(dbg as *const RDebug)).r_map }
}

/// The address DT_DEBUG holds in the program's dynamic section (the loader writes it there).
fn program_r_debug() -> Option<usize> {
    let (phdr, phnum) = (
        crate::auxv::get(libc::AT_PHDR)?,
        crate::auxv::get(libc::AT_PHNUM)?,
    );
    if phdr == 0 || phnum == 0 || phnum > 256 {
        return None;
    }
    // SAFETY: the kernel's AT_PHDR and AT_PHNUM describe the program's mapped headers.
    let phdrs = unsafe { core::slice::from_raw_parts(phdr as *const Phdr, phnum) };
    let bias = phdrs
        .iter()
        .find(|p| p.p_type == PT_PHDR)
        .map(|p| phdr.wrapping_sub(p.p_vaddr as usize))?;
    let dynamic = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC)?;
    let dynamic = bias.wrapping_add(dynamic.p_vaddr as usize) as *const Dyn;
    // SAFETY: the program's mapped dynamic section, which ends in DT_NULL.
    let found = unsafe { dynamic_entry(dynamic, DT_DEBUG) };
    found.filter(|&v| v != 0)
}

/// glibc's loader exports its `r_debug` as `_r_debug`.
fn loader_r_debug() -> Option<usize> {
    let t = loader_table()?;
    // SAFETY: a table read from the loader's mapped headers.
    let a = unsafe { t.lookup(&Name::new(b"_r_debug")) };
    (a != 0).then_some(a)
}

/// The loader's own symbol table, from the ELF header at AT_BASE.
fn loader_table() -> Option<Table> {
    let (dynamic, base) = loader_dynamic()?;
    // SAFETY: the loader's mapped dynamic section.
    unsafe { Table::read(dynamic, base) }
}

/// The loader's dynamic section and load address, from the ELF header at AT_BASE; or, when
/// the loader was run as the program (`ld.so ./prog`: AT_BASE 0, AT_PHDR its own headers),
/// from the ELF header on the page of AT_PHDR, if that object names no interpreter.
fn loader_dynamic() -> Option<(*const Dyn, usize)> {
    let base = match crate::auxv::get(libc::AT_BASE)? {
        0 => loader_run_as_program()?,
        b => b,
    };
    // SAFETY: the kernel mapped the loader's ELF header at AT_BASE, and its program headers
    // with it.
    unsafe {
        let eh = &*(base as *const Ehdr);
        if eh.e_ident.get(..4) != Some(b"\x7fELF".as_slice()) || eh.e_phnum > 256 {
            return None;
        }
        let phdrs = core::slice::from_raw_parts(
            (base + eh.e_phoff as usize) as *const Phdr,
            eh.e_phnum as usize,
        );
        let dynamic = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC)?;
        Some(((base + dynamic.p_vaddr as usize) as *const Dyn, base))
    }
}

/// The load address of the program the kernel ran, when that program is a loader (no
/// PT_INTERP): its ELF header sits at the start of the page of its program headers.
fn loader_run_as_program() -> Option<usize> {
    const PT_INTERP: u32 = 3;
    let (phdr, phnum) = (
        crate::auxv::get(libc::AT_PHDR)?,
        crate::auxv::get(libc::AT_PHNUM)?,
    );
    let page = crate::auxv::get(libc::AT_PAGESZ)
        .filter(|&p| p != 0)
        .unwrap_or(4096);
    if phdr == 0 || phnum == 0 || phnum > 256 {
        return None;
    }
    // SAFETY: the kernel's AT_PHDR and AT_PHNUM describe the mapped program headers.
    let phdrs = unsafe { core::slice::from_raw_parts(phdr as *const Phdr, phnum) };
    if phdrs.iter().any(|p| p.p_type == PT_INTERP) {
        return None;
    }
    let base = phdr & !(page - 1);
    // SAFETY: the page holding the mapped program headers is mapped; the header is read
    // only if it is one (the magic, and e_phoff leading back to AT_PHDR).
    let eh = unsafe { &*(base as *const Ehdr) };
    (eh.e_ident.get(..4) == Some(b"\x7fELF".as_slice())
        && base.wrapping_add(eh.e_phoff as usize) == phdr)
        .then_some(base)
}

/// The value of the first `tag` entry of a dynamic section.
///
/// # Safety
/// `d` is a mapped dynamic section, ending in DT_NULL.
unsafe fn dynamic_entry(mut d: *const Dyn, tag: usize) -> Option<usize> {
    for _ in 0..4096 {
        // SAFETY: within the section, up to its DT_NULL (the caller's promise).
        let e = unsafe { &*d };
        if e.d_tag == DT_NULL {
            return None;
        }
        if e.d_tag == tag {
            return Some(e.d_un);
        }
        // SAFETY: as above.
        d = unsafe { d.add(1) };
    }
    None
}

/// Calls `f` with each loaded object in load order, until it returns false; `alone` is true
/// when there is no list and the loader is the one object (musl's loader is its libc),
/// which then counts as coming after this library.
fn for_each_object(mut f: impl FnMut(&LinkMap, bool) -> bool) {
    let mut m = loaded_objects();
    if m.is_null() {
        // No list to walk: the loader itself is the only object to search (musl's is libc).
        if let Some((dynamic, base)) = loader_dynamic() {
            let lm = LinkMap {
                l_addr: base,
                l_name: core::ptr::null(),
                l_ld: dynamic,
                l_next: core::ptr::null(),
                l_prev: core::ptr::null(),
            };
            f(&lm, true);
        }
        return;
    }
    // Bounded: a list longer than this is no list the library should trust.
    for _ in 0..4096 {
        if m.is_null() {
            return;
        }
        // SAFETY: an entry of the loader's list; objects are added at its end, and the
        // entries before them stay valid while this walk reads them.
        let lm = unsafe { &*m };
        if !f(lm, false) {
            return;
        }
        m = lm.l_next;
    }
}

/// The kernel's vDSO, which defines none of the names looked for.
fn is_vdso(lm: &LinkMap) -> bool {
    if lm.l_name.is_null() {
        return false;
    }
    // SAFETY: the loader's name of the object, NUL-terminated; the comparison stops at the
    // first byte that differs, so at the NUL at the latest.
    unsafe {
        let n = lm.l_name.cast::<u8>();
        b"linux-".iter().enumerate().all(|(i, b)| *n.add(i) == *b)
    }
}

/// Resolves each of `names` into `found` (0 where none is defined); one walk for all.
pub fn find(names: &[(Name, From)], found: &mut [usize]) {
    let me = my_dynamic();
    let mut after_me = false;
    for_each_object(|lm, alone| {
        after_me |= alone;
        if lm.l_ld as usize == me {
            after_me = true;
            return true;
        }
        if lm.l_ld.is_null()
            || !(after_me || names.iter().any(|(_, f)| *f == From::First))
            || is_vdso(lm)
        {
            return true;
        }
        // SAFETY: a loaded object's dynamic section and load address, as the loader has them.
        let Some(table) = (unsafe { Table::read(lm.l_ld, lm.l_addr) }) else {
            return true;
        };
        let mut left = 0;
        for ((name, from), slot) in names.iter().zip(found.iter_mut()) {
            if *slot == 0 && (after_me || *from == From::First) {
                // SAFETY: a table read from a loaded object.
                *slot = unsafe { table.lookup(name) };
            }
            left += usize::from(*slot == 0);
        }
        left != 0
    });
}

/// The next definition of one name after this library (0 if none).
pub fn next(name: &Name) -> usize {
    let mut found = [0usize];
    find(&[(*name, From::AfterMe)], &mut found);
    let [a] = found;
    a
}

/// One object's dynamic symbol table. Every pointer points into the object's mapped
/// dynamic data, as the loader left it.
pub struct Table {
    base: usize,
    dynamic: *const Dyn,
    symtab: *const Sym,
    strtab: *const u8,
    gnu_hash: *const u32,
    sysv_hash: *const u32,
}

impl Table {
    /// # Safety
    /// `dynamic` is the mapped PT_DYNAMIC array of an object loaded at `base`.
    pub unsafe fn read(dynamic: *const Dyn, base: usize) -> Option<Table> {
        let mut t = Table {
            base,
            dynamic,
            symtab: core::ptr::null(),
            strtab: core::ptr::null(),
            gnu_hash: core::ptr::null(),
            sysv_hash: core::ptr::null(),
        };
        let mut d = dynamic;
        // The tables come early in the section (DT_VERSYM late, and looked for only once a
        // name matches): the scan stops as soon as it has them.
        for _ in 0..4096 {
            // SAFETY: within the section, which ends in DT_NULL (the caller's promise).
            let e = unsafe { &*d };
            let at = t.address(e.d_un);
            match e.d_tag {
                DT_NULL => break,
                DT_SYMTAB => t.symtab = at as *const Sym,
                DT_STRTAB => t.strtab = at as *const u8,
                DT_GNU_HASH => t.gnu_hash = at as *const u32,
                DT_HASH => t.sysv_hash = at as *const u32,
                _ => {}
            }
            if !t.symtab.is_null() && !t.strtab.is_null() && !t.gnu_hash.is_null() {
                break;
            }
            // SAFETY: as above.
            d = unsafe { d.add(1) };
        }
        (!t.symtab.is_null() && !t.strtab.is_null()).then_some(t)
    }

    /// An address from the dynamic section: glibc has added the load address to these in
    /// place; musl has not.
    fn address(&self, p: usize) -> usize {
        if p < self.base {
            self.base + p
        } else {
            p
        }
    }

    /// The symbol version table (DT_VERSYM), null if the object has none.
    ///
    /// # Safety
    /// As `lookup`.
    unsafe fn versym(&self) -> *const u16 {
        // SAFETY: the dynamic section the table was read from.
        match unsafe { dynamic_entry(self.dynamic, DT_VERSYM) } {
            Some(p) => self.address(p) as *const u16,
            None => core::ptr::null(),
        }
    }

    /// The address of `name` if this object defines it (default version), else 0.
    ///
    /// # Safety
    /// The table was read from a loaded object.
    pub unsafe fn lookup(&self, name: &Name) -> usize {
        // SAFETY: the caller's promise.
        unsafe {
            if !self.gnu_hash.is_null() {
                self.gnu_lookup(name)
            } else if !self.sysv_hash.is_null() {
                self.sysv_lookup(name)
            } else {
                0
            }
        }
    }

    /// # Safety
    /// `i` is an index the object's hash table gave, so within its symbol table.
    unsafe fn matches(&self, i: usize, name: &[u8]) -> usize {
        // SAFETY: i is within the symbol table; strtab and versym cover every symbol; the
        // symbol's name is NUL-terminated.
        unsafe {
            let sym = &*self.symtab.add(i);
            let kind = sym.st_info & 0xf;
            if sym.st_shndx == 0 || !matches!(kind, STT_FUNC | STT_OBJECT | STT_GNU_IFUNC) {
                return 0;
            }
            if kind == STT_GNU_IFUNC {
                // Resolved by a call at load time; none of the functions looked up here is
                // one in any libc at hand, and calling a resolver from here is not worth it.
                return 0;
            }
            let mut p = self.strtab.add(sym.st_name as usize);
            for &b in name {
                if *p != b {
                    return 0;
                }
                p = p.add(1);
            }
            if *p != 0 {
                return 0;
            }
            let versym = self.versym();
            if !versym.is_null() && *versym.add(i) & 0x8000 != 0 {
                return 0; // a hidden (non-default) version
            }
            self.base + sym.st_value as usize
        }
    }

    /// # Safety
    /// As `lookup`.
    unsafe fn gnu_lookup(&self, name: &Name) -> usize {
        // SAFETY: the GNU hash table is laid out as the ELF ABI has it; every index used
        // comes from the table itself.
        unsafe {
            let h = name.gnu;
            let t = self.gnu_hash;
            let (nbuckets, symoffset, bloom_size, shift) = (*t, *t.add(1), *t.add(2), *t.add(3));
            if nbuckets == 0 || bloom_size == 0 {
                return 0;
            }
            let word_bits = usize::BITS;
            let bloom = t.add(4) as *const usize;
            let word = *bloom.add(((h / word_bits) % bloom_size) as usize);
            let mask = (1usize << (h % word_bits)) | (1usize << ((h >> shift) % word_bits));
            if word & mask != mask {
                return 0;
            }
            let buckets =
                (bloom as *const u32).add(bloom_size as usize * (word_bits as usize / 32));
            let i = *buckets.add((h % nbuckets) as usize);
            if i < symoffset {
                return 0;
            }
            let chain = buckets.add(nbuckets as usize);
            // The chain of this bucket, to its last entry (low bit set); bounded all the same.
            for i in (i..).take(1 << 20) {
                let h2 = *chain.add((i - symoffset) as usize);
                if h | 1 == h2 | 1 {
                    let a = self.matches(i as usize, name.bytes);
                    if a != 0 {
                        return a;
                    }
                }
                if h2 & 1 != 0 {
                    break;
                }
            }
            0
        }
    }

    /// # Safety
    /// As `lookup`.
    unsafe fn sysv_lookup(&self, name: &Name) -> usize {
        // SAFETY: the SysV hash table is laid out as the ELF ABI has it; every index used
        // comes from the table itself, bounded by nchain.
        unsafe {
            let h = name.sysv;
            let t = self.sysv_hash;
            let (nbucket, nchain) = (*t, *t.add(1));
            if nbucket == 0 {
                return 0;
            }
            let chain = t.add(2 + nbucket as usize);
            let mut i = *t.add(2 + (h % nbucket) as usize);
            for _ in 0..nchain {
                if i == 0 || i >= nchain {
                    break;
                }
                let a = self.matches(i as usize, name.bytes);
                if a != 0 {
                    return a;
                }
                i = *chain.add(i as usize);
            }
            0
        }
    }
}
