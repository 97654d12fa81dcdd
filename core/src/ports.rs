//! Which ports the library acts on: a short sorted list of port ranges.

use core::fmt;

/// At most this many disjoint ranges in REUSE_PORTS (after merging overlaps).
pub const MAX_RANGES: usize = 64;

/// Which ports the library acts on: sorted, disjoint, non-adjacent ranges. Port 0 is never a
/// member: binding to port 0 asks the kernel for a free ephemeral port, and there is nothing
/// to reuse.
///
/// A short list rather than a 65536-bit map: the library builds one in every process it is
/// loaded into, and 260 bytes cost nothing where 8 kB of map cost a measurable share of an
/// exec of a small program.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PortSet {
    ranges: [(u16, u16); MAX_RANGES],
    len: u8,
}

impl PortSet {
    /// Every port from 1 to 65535.
    pub const fn all() -> Self {
        let mut ranges = [(0, 0); MAX_RANGES];
        ranges[0] = (1, 65535);
        PortSet { ranges, len: 1 }
    }

    pub const fn empty() -> Self {
        PortSet {
            ranges: [(0, 0); MAX_RANGES],
            len: 0,
        }
    }

    /// The ranges in use.
    #[inline]
    fn used(&self) -> &[(u16, u16)] {
        self.ranges.get(..self.len as usize).unwrap_or_default()
    }

    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        // The usual sets (every port, one port, one range) are decided by the first range
        // without setting up the loop: this runs at every bind.
        if let Some(&(lo, hi)) = self.ranges.first() {
            if self.len != 0 && port.wrapping_sub(lo) <= hi.wrapping_sub(lo) {
                return true;
            }
        }
        self.used()
            .iter()
            .skip(1)
            .any(|&(lo, hi)| lo <= port && port <= hi)
    }

    /// Adds `lo..=hi` (port 0 left out), merging with what touches it. False if the set
    /// would need more than [`MAX_RANGES`] ranges.
    pub fn insert_range(&mut self, lo: u16, hi: u16) -> bool {
        let lo = lo.max(1);
        if lo > hi {
            return true;
        }
        let (mut lo, mut hi) = (lo as u32, hi as u32);
        let mut out = [(0u16, 0u16); MAX_RANGES];
        let mut n = 0usize;
        let mut placed = false;
        // Appends one range to `out`; false when it is full.
        let mut push = |n: &mut usize, r: (u32, u32)| match out.get_mut(*n) {
            Some(slot) => {
                *slot = (r.0 as u16, r.1 as u16);
                *n += 1;
                true
            }
            None => false,
        };
        for &(a, b) in self.used() {
            let (a, b) = (a as u32, b as u32);
            if b + 1 < lo {
                if !push(&mut n, (a, b)) {
                    return false;
                }
            } else if hi + 1 < a {
                if !placed {
                    if !push(&mut n, (lo, hi)) {
                        return false;
                    }
                    placed = true;
                }
                if !push(&mut n, (a, b)) {
                    return false;
                }
            } else {
                lo = lo.min(a);
                hi = hi.max(b);
            }
        }
        if !placed && !push(&mut n, (lo, hi)) {
            return false;
        }
        self.ranges = out;
        self.len = n as u8;
        true
    }

    pub fn is_all(&self) -> bool {
        self.used() == [(1, 65535)]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The set as maximal ranges, in increasing order.
    pub fn ranges(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        self.used().iter().copied()
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PortSet({self})")
    }
}

/// Canonical form: `*` for every port, else ranges joined by commas; parses back to the same set.
impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("*");
        }
        for (i, (lo, hi)) in self.ranges().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}
