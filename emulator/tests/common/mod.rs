//! Test machine: a FlatBus, a Cpu set up for real, 32-bit protected or
//! 64-bit long mode (flat segments, identity paging), and helpers to run
//! programs assembled with iced-x86's code assembler.
#![allow(dead_code)]

use hyperplug_emulator::cpu::{DtReg, Seg, SegReg};
use hyperplug_emulator::{Cpu, Engine, Event, EventKind, FlatBus, InterceptPolicy};
use iced_x86::code_asm::CodeAssembler;

/// RAM size of the test machine.
pub const RAM: usize = 8 << 20;
/// Where programs are loaded.
pub const CODE: u64 = 0x10000;
/// Initial stack top.
pub const STACK: u64 = 0x8000;
/// Data area.
pub const DATA: u64 = 0x20000;
/// IDT / IVT location (protected/long mode).
pub const IDT: u64 = 0x3000;
/// GDT.
pub const GDT: u64 = 0x1000;
/// TSS.
pub const TSS: u64 = 0x1800;
/// Page tables (long mode): PML4, PDPT, PD.
pub const PML4: u64 = 0x100000;

/// Execution mode of a test machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum M {
    Real,
    Prot32,
    Long64,
}

impl M {
    pub fn bitness(self) -> u32 {
        match self {
            M::Real => 16,
            M::Prot32 => 32,
            M::Long64 => 64,
        }
    }
}

pub struct Machine {
    pub cpu: Cpu,
    pub bus: FlatBus,
    pub eng: Engine,
    pub policy: InterceptPolicy,
    pub mode: M,
}

fn flat(sel: u16, code: bool, long: bool) -> Seg {
    Seg {
        selector: sel,
        base: 0,
        limit: 0xffff_ffff,
        typ: if code { 0xb } else { 0x3 },
        s: true,
        dpl: 0,
        present: true,
        avl: false,
        l: long && code,
        db: !(long && code),
        g: true,
        unusable: false,
    }
}

/// GDT: 0 null, 0x08 code32, 0x10 data, 0x18 code64, 0x20 user code64 (DPL3),
/// 0x28 user data (DPL3), 0x30 TSS (64-bit, 16 bytes).
fn write_gdt(bus: &mut FlatBus) {
    let descs: [u64; 6] = [
        0,
        0x00cf_9a00_0000_ffff,
        0x00cf_9200_0000_ffff,
        0x00af_9a00_0000_ffff,
        0x00af_fa00_0000_ffff,
        0x00cf_f200_0000_ffff,
    ];
    for (i, d) in descs.iter().enumerate() {
        bus.load(GDT + 8 * i as u64, &d.to_le_bytes());
    }
    // 64-bit TSS descriptor at 0x30: base TSS, limit 0x67, type 9 (available).
    let lo: u64 = 0x67 | ((TSS & 0xff_ffff) << 16) | (0x89u64 << 40) | (((TSS >> 24) & 0xff) << 56);
    bus.load(GDT + 0x30, &lo.to_le_bytes());
    bus.load(GDT + 0x38, &0u64.to_le_bytes());
}

impl Machine {
    pub fn new(mode: M) -> Self {
        let mut bus = FlatBus::new(RAM);
        let mut cpu = Cpu::default();
        match mode {
            M::Real => {
                cpu.seg[SegReg::Cs as usize] = Seg::real((CODE >> 4) as u16, true);
                cpu.rip = 0;
                cpu.gpr[4] = STACK;
            }
            M::Prot32 | M::Long64 => {
                write_gdt(&mut bus);
                cpu.gdtr = DtReg {
                    base: GDT,
                    limit: 0x3f,
                };
                cpu.idtr = DtReg {
                    base: IDT,
                    limit: 0xfff,
                };
                cpu.cr0 = 0x11;
                for s in [SegReg::Ds, SegReg::Es, SegReg::Ss, SegReg::Fs, SegReg::Gs] {
                    cpu.seg[s as usize] = flat(0x10, false, false);
                }
                cpu.tr = Seg {
                    selector: 0x30,
                    base: TSS,
                    limit: 0x67,
                    typ: 0xb,
                    present: true,
                    ..Seg::default()
                };
                cpu.rip = CODE;
                cpu.gpr[4] = STACK;
                if mode == M::Prot32 {
                    cpu.seg[SegReg::Cs as usize] = flat(0x08, true, false);
                } else {
                    cpu.seg[SegReg::Cs as usize] = flat(0x18, true, true);
                    // Identity map the first 1 GiB with 2-MiB pages.
                    bus.load(PML4, &((PML4 + 0x1000) | 7).to_le_bytes());
                    bus.load(PML4 + 0x1000, &((PML4 + 0x2000) | 7).to_le_bytes());
                    for i in 0..512u64 {
                        let e = (i << 21) | 0x83 | 4;
                        bus.load(PML4 + 0x2000 + 8 * i, &e.to_le_bytes());
                    }
                    cpu.cr3 = PML4;
                    cpu.cr4 = 0x20;
                    cpu.efer = 0x500;
                    cpu.cr0 = 0x8000_0011;
                }
            }
        }
        Self {
            cpu,
            bus,
            eng: Engine::standalone(),
            policy: InterceptPolicy::default(),
            mode,
        }
    }

    /// Base linear address of CS:0 for the loaded program.
    pub fn code_base(&self) -> u64 {
        match self.mode {
            M::Real => 0,
            _ => CODE,
        }
    }

    /// Assembles `f` for this mode and loads it at CODE.
    pub fn load(&mut self, f: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
        let mut a = CodeAssembler::new(self.mode.bitness()).expect("bitness");
        f(&mut a);
        let bytes = a.assemble(self.code_base()).expect("assemble");
        assert!(self.bus.load(CODE, &bytes));
        bytes
    }

    pub fn run(&mut self, budget: u64) -> Event {
        self.eng
            .execute(&mut self.cpu, &mut self.bus, &self.policy, budget)
    }

    /// Runs until HLT and asserts that is how it stopped.
    pub fn run_to_hlt(&mut self) -> Event {
        let e = self.run(1_000_000);
        assert_eq!(
            e.kind,
            EventKind::Hlt,
            "stopped with {e:?} at rip {:#x}",
            self.cpu.rip
        );
        e
    }

    /// Installs an IDT gate for `vector` → `handler` (a linear address),
    /// 32-bit interrupt gates in protected mode, 64-bit in long mode, IVT in real mode.
    pub fn gate(&mut self, vector: u8, handler: u64) {
        match self.mode {
            M::Real => {
                let e = (handler & 0xffff) as u32 | (((CODE >> 4) as u32) << 16);
                self.bus.load(u64::from(vector) * 4, &e.to_le_bytes());
            }
            M::Prot32 => {
                let lo =
                    (handler & 0xffff) | (0x08 << 16) | (0x8eu64 << 40) | ((handler >> 16) << 48);
                self.bus
                    .load(IDT + 8 * u64::from(vector), &lo.to_le_bytes());
            }
            M::Long64 => {
                let lo = (handler & 0xffff)
                    | (0x18 << 16)
                    | (0x8eu64 << 40)
                    | (((handler >> 16) & 0xffff) << 48);
                self.bus
                    .load(IDT + 16 * u64::from(vector), &lo.to_le_bytes());
                self.bus.load(
                    IDT + 16 * u64::from(vector) + 8,
                    &(handler >> 32).to_le_bytes(),
                );
            }
        }
    }

    pub fn gpr(&self, i: usize) -> u64 {
        self.cpu.gpr[i]
    }
}
