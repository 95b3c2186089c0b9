//! Editing the second-level tables: installing leaves (splitting large
//! pages on the way), zapping ranges, harvesting dirty flags. One code path
//! for both formats; entry encodings come from [`Ept`] and [`Npt`].

use super::{TdpError, TdpMmu};
use crate::nested::ept::{EPT_A, EPT_D};
use crate::nested::npt::{NPT_A, NPT_D};
use crate::nested::{addr_mask, level_shift, table_index, SecondLevel};
use crate::phys::PhysMemory;

impl TdpMmu {
    pub(super) fn maxphyaddr(&self) -> u8 {
        match self.sl {
            SecondLevel::Ept(e) => e.maxphyaddr,
            SecondLevel::Npt(n) => n.maxphyaddr,
        }
    }

    fn present(&self, e: u64) -> bool {
        match self.sl {
            SecondLevel::Ept(x) => x.present(e),
            SecondLevel::Npt(x) => x.present(e),
        }
    }

    fn is_leaf(&self, e: u64, level: u8) -> bool {
        match self.sl {
            SecondLevel::Ept(x) => x.is_leaf(e, level),
            SecondLevel::Npt(x) => x.is_leaf(e, level),
        }
    }

    fn next_table(&self, e: u64) -> u64 {
        e & addr_mask(self.maxphyaddr())
    }

    fn table_entry(&self, table: u64) -> u64 {
        match self.sl {
            SecondLevel::Ept(x) => x.table_entry(table),
            SecondLevel::Npt(x) => x.table_entry(table),
        }
    }

    pub(super) fn mmio_entry(&self) -> Option<u64> {
        match self.sl {
            SecondLevel::Ept(x) => Some(x.mmio_entry()),
            SecondLevel::Npt(x) => x.mmio_entry(),
        }
    }

    /// Accessed and dirty flags of the format.
    fn ad_bits(&self) -> (u64, u64) {
        match self.sl {
            SecondLevel::Ept(_) => (EPT_A, EPT_D),
            SecondLevel::Npt(_) => (NPT_A, NPT_D),
        }
    }

    fn read(&self, addr: u64) -> Result<u64, TdpError> {
        self.arena.read_u64(addr).map_err(|_| TdpError::Table(addr))
    }

    fn store(&self, addr: u64, v: u64) -> Result<(), TdpError> {
        self.arena.store(addr, v).map_err(|_| TdpError::Table(addr))
    }

    /// Installs the leaf `leaf(level)` for `gpa` at level `want` (1 or 2),
    /// creating tables on the way. An existing table at the target level is
    /// kept (its 4-KiB entries may carry dirty flags): the leaf goes below it.
    pub(super) fn install(
        &mut self,
        gpa: u64,
        mut want: u8,
        leaf: impl Fn(u8) -> u64,
    ) -> Result<(), TdpError> {
        let (a, d) = self.ad_bits();
        let mut table = self.sl.root();
        let mut level = self.sl.levels();
        loop {
            let ea = table + table_index(gpa, level) * 8;
            let e = self.read(ea)?;
            let present = self.present(e);
            if level <= want {
                if level > 1 && present && !self.is_leaf(e, level) {
                    want = 1;
                } else {
                    let new = leaf(level);
                    if e & !(a | d) != new {
                        self.store(ea, new)?;
                    }
                    return Ok(());
                }
            }
            if present && !self.is_leaf(e, level) {
                table = self.next_table(e);
            } else {
                // Empty, or a leaf above the target level: a new table replaces
                // it (a leaf is split so its other pages and flags survive).
                let t = self.arena.alloc();
                if present {
                    self.split(e, level, t)?;
                }
                self.store(ea, self.table_entry(t))?;
                table = t;
            }
            level -= 1;
        }
    }

    /// Fills the new table `t` with the 512 entries that map what the large
    /// leaf `e` at `level` mapped, keeping its permissions and A/D flags
    /// (bit 7 is PS in both formats; 4-KiB entries do not have it).
    fn split(&self, e: u64, level: u8, t: u64) -> Result<(), TdpError> {
        const PS: u64 = 1 << 7;
        let mask = addr_mask(self.maxphyaddr());
        let sub = 1u64 << level_shift(level - 1);
        let attrs = (e & !mask & !PS) | if level - 1 > 1 { PS } else { 0 };
        let base = e & mask & !((1u64 << level_shift(level)) - 1);
        for i in 0..512u64 {
            self.store(t + i * 8, attrs | (base + i * sub))?;
        }
        Ok(())
    }

    pub(super) fn zap(
        &self,
        table: u64,
        level: u8,
        base: u64,
        start: u64,
        end: u64,
        freed: &mut Vec<u64>,
    ) -> Result<u64, TdpError> {
        let span = 1u64 << level_shift(level);
        let mut n = 0;
        for i in 0..512u64 {
            let lo = base + i * span;
            let hi = lo + span;
            if hi <= start || lo >= end {
                continue;
            }
            let ea = table + i * 8;
            let e = self.read(ea)?;
            if e == 0 {
                continue;
            }
            let is_table = self.present(e) && !self.is_leaf(e, level);
            if is_table && !(start <= lo && hi <= end) {
                n += self.zap(self.next_table(e), level - 1, lo, start, end, freed)?;
                continue;
            }
            self.store(ea, 0)?;
            n += 1;
            if is_table {
                self.collect(self.next_table(e), level - 1, freed)?;
            }
        }
        Ok(n)
    }

    /// Pushes the table at `table` and every table below it onto `freed`.
    fn collect(&self, table: u64, level: u8, freed: &mut Vec<u64>) -> Result<(), TdpError> {
        if level > 1 {
            for i in 0..512u64 {
                let e = self.read(table + i * 8)?;
                if self.present(e) && !self.is_leaf(e, level) {
                    self.collect(self.next_table(e), level - 1, freed)?;
                }
            }
        }
        freed.push(table);
        Ok(())
    }

    pub(super) fn harvest(
        &self,
        table: u64,
        level: u8,
        base: u64,
        f: &mut impl FnMut(u64, u64),
    ) -> Result<usize, TdpError> {
        let (_, d) = self.ad_bits();
        let span = 1u64 << level_shift(level);
        let mut n = 0;
        for i in 0..512u64 {
            let ea = table + i * 8;
            let lo = base + i * span;
            let mut e = self.read(ea)?;
            if !self.present(e) {
                continue;
            }
            if !self.is_leaf(e, level) {
                n += self.harvest(self.next_table(e), level - 1, lo, f)?;
                continue;
            }
            while e & d != 0 {
                match self.arena.cmpxchg_u64(ea, e, e & !d) {
                    Ok(true) => {
                        f(lo, span);
                        n += 1;
                        break;
                    }
                    Ok(false) => e = self.read(ea)?,
                    Err(_) => return Err(TdpError::Table(ea)),
                }
            }
        }
        Ok(n)
    }
}
