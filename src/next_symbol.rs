//! Finding the next definition of a function after this library, as `dlsym(RTLD_NEXT)`
//! does, by reading the loaded objects' dynamic symbol tables.
//!
//! Why not dlsym: glibc 2.34 moved it from libdl into libc under a new symbol version, so a
//! library that imports it needs `dlsym@GLIBC_2.34` and fails to load (taking the program
//! with it) on every older glibc, and pinning the old version would need libdl loaded into
//! every process. `dl_iterate_phdr` has been in libc since glibc 2.2.5 and in musl.
//!
//! The objects are searched in load order after this one (the global scope's order for a
//! preloaded library); in each, the GNU hash table (else the SysV one) finds the symbol;
//! only a defined function or object in its default (non-hidden) version counts.

use core::ffi::{c_int, c_void, CStr};

const DT_NULL: i64 = 0;
const DT_HASH: i64 = 4;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_GNU_HASH: i64 = 0x6fff_fef5;
const DT_VERSYM: i64 = 0x6fff_fff0;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const STT_OBJECT: u8 = 1;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;

#[repr(C)]
struct Dyn {
    d_tag: i64,
    d_un: u64,
}

#[cfg(target_pointer_width = "64")]
type Sym = libc::Elf64_Sym;
#[cfg(target_pointer_width = "32")]
type Sym = libc::Elf32_Sym;
#[cfg(target_pointer_width = "64")]
type Phdr = libc::Elf64_Phdr;
#[cfg(target_pointer_width = "32")]
type Phdr = libc::Elf32_Phdr;

extern "C" {
    pub fn dl_iterate_phdr(
        callback: unsafe extern "C" fn(*mut libc::dl_phdr_info, usize, *mut c_void) -> c_int,
        data: *mut c_void,
    ) -> c_int;
}

/// The names looked for and what was found for each (0: not yet).
struct Search<'a> {
    names: &'a [&'a CStr],
    found: &'a mut [usize],
    /// Set once this library's own object has been passed: only objects after it count.
    after_me: bool,
    me: usize,
}

/// Resolves each of `names` into `found` (0 where no object after this one defines it).
pub fn find(names: &[&CStr], found: &mut [usize]) {
    let mut s = Search {
        names,
        found,
        after_me: false,
        me: find as *const () as usize,
    };
    // SAFETY: the callback reads only the loader's own, fully mapped, object data.
    unsafe { dl_iterate_phdr(visit, (&mut s as *mut Search<'_>).cast()) };
}

unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info for a loaded object, and data is the
    // Search that find() lent it for this walk.
    unsafe {
        let s = &mut *(data as *mut Search<'_>);
        let info = &*info;
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        let phdrs =
            core::slice::from_raw_parts(info.dlpi_phdr as *const Phdr, info.dlpi_phnum as usize);
        let base = info.dlpi_addr as usize;
        if !s.after_me {
            let mine = phdrs.iter().any(|p| {
                let start = base + p.p_vaddr as usize;
                p.p_type == PT_LOAD && s.me >= start && s.me < start + p.p_memsz as usize
            });
            s.after_me = mine;
            return 0;
        }
        let Some(dynamic) = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) else {
            return 0;
        };
        let Some(table) = Table::read((base + dynamic.p_vaddr as usize) as *const Dyn, base) else {
            return 0;
        };
        let mut left = 0;
        for (name, slot) in s.names.iter().zip(s.found.iter_mut()) {
            if *slot == 0 {
                *slot = table.lookup(name.to_bytes());
                left += usize::from(*slot == 0);
            }
        }
        // Stop as soon as everything is found.
        c_int::from(left == 0)
    }
}

/// One object's dynamic symbol table.
struct Table {
    base: usize,
    symtab: *const Sym,
    strtab: *const u8,
    gnu_hash: *const u32,
    sysv_hash: *const u32,
    versym: *const u16,
}

impl Table {
    unsafe fn read(dynamic: *const Dyn, base: usize) -> Option<Table> {
        // SAFETY: dynamic is the object's mapped PT_DYNAMIC array, which ends in DT_NULL
        // (and is bounded here all the same).
        unsafe {
            // glibc has added the load address to these in place; musl has not.
            let addr = |p: u64| {
                let p = p as usize;
                if p < base {
                    base + p
                } else {
                    p
                }
            };
            let mut t = Table {
                base,
                symtab: core::ptr::null(),
                strtab: core::ptr::null(),
                gnu_hash: core::ptr::null(),
                sysv_hash: core::ptr::null(),
                versym: core::ptr::null(),
            };
            let mut d = dynamic;
            for _ in 0..4096 {
                let e = &*d;
                match e.d_tag {
                    DT_NULL => break,
                    DT_SYMTAB => t.symtab = addr(e.d_un) as *const Sym,
                    DT_STRTAB => t.strtab = addr(e.d_un) as *const u8,
                    DT_GNU_HASH => t.gnu_hash = addr(e.d_un) as *const u32,
                    DT_HASH => t.sysv_hash = addr(e.d_un) as *const u32,
                    DT_VERSYM => t.versym = addr(e.d_un) as *const u16,
                    _ => {}
                }
                d = d.add(1);
            }
            (!t.symtab.is_null() && !t.strtab.is_null()).then_some(t)
        }
    }

    /// The address of `name` if this object defines it (default version), else 0.
    unsafe fn lookup(&self, name: &[u8]) -> usize {
        // SAFETY: as the callers' (a Table read from a loaded object).
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

    unsafe fn matches(&self, i: usize, name: &[u8]) -> usize {
        // SAFETY: i is an index the object's hash table gave, so within its symbol table;
        // strtab and versym cover every symbol; the name is NUL-terminated.
        unsafe {
            let sym = &*self.symtab.add(i);
            let kind = sym.st_info & 0xf;
            if sym.st_shndx == 0 || !matches!(kind, STT_FUNC | STT_OBJECT | STT_GNU_IFUNC) {
                return 0;
            }
            if kind == STT_GNU_IFUNC {
                // Resolved by a call at load time; none of the functions looked up here is one
                // in any libc at hand, and calling a resolver from here is not worth the risk.
                return 0;
            }
            if !self.versym.is_null() && *self.versym.add(i) & 0x8000 != 0 {
                return 0; // a hidden (non-default) version
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
            self.base + sym.st_value as usize
        }
    }

    unsafe fn gnu_lookup(&self, name: &[u8]) -> usize {
        // SAFETY: the GNU hash table is laid out as the ELF ABI has it; every index used
        // comes from the table itself.
        unsafe {
            let h = name.iter().fold(5381u32, |h, &c| {
                h.wrapping_mul(33).wrapping_add(u32::from(c))
            });
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
                    let a = self.matches(i as usize, name);
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

    unsafe fn sysv_lookup(&self, name: &[u8]) -> usize {
        // SAFETY: the SysV hash table is laid out as the ELF ABI has it; every index used
        // comes from the table itself, bounded by nchain.
        unsafe {
            let h = name.iter().fold(0u32, |h, &c| {
                let h = (h << 4).wrapping_add(u32::from(c));
                let g = h & 0xf000_0000;
                (h ^ (g >> 24)) & !g
            });
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
                let a = self.matches(i as usize, name);
                if a != 0 {
                    return a;
                }
                i = *chain.add(i as usize);
            }
            0
        }
    }
}
