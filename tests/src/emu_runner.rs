//! Runs native-oracle cases ([`hyperplug_oracle::Case`]) on the Hyperplug
//! emulator and compares the two outcomes: the emulator side of the
//! differential test against the real CPU in 64-bit user mode.
//!
//! The emulated machine mirrors the oracle's Linux child process:
//!
//! * IA-32e mode with 4-level paging (SDM vol. 3, 4.5): CR0 = PE|MP|ET|NE|WP|AM|PG
//!   (Linux sets CR0.AM, so RFLAGS.AC gives #AC at CPL 3, SDM vol. 3, 6.15
//!   "Interrupt 17"), CR4.PAE, EFER = SCE|LME|LMA|NXE.
//! * CPL 3 with Linux's flat user selectors: CS = 0x33 (64-bit, L = 1), SS = 0x2b;
//!   DS/ES/FS/GS null (their bases are ignored in 64-bit mode, SDM vol. 3, 3.4.4).
//! * `CODE_ADDR`: one user page, writable and executable (the child maps it RWX);
//!   `DATA_ADDR`: 64 KiB user, writable, NX; `UNMAPPED_ADDR` and everything else
//!   not present, so accesses fault with the user-mode #PF error codes
//!   (SDM vol. 3, 4.7, Figure 4-12).
//! * A GDT and an IDT of 64-bit interrupt gates, DPL 0 except #BP (3) and #OF (4),
//!   which Linux makes DPL 3: `INT n` to a DPL-0 gate raises #GP(n*8+2) as on Linux
//!   (SDM vol. 3, 6.12.1.1). No handler is ever entered: the intercept policy stops
//!   on every exception vector (`exceptions = !0`), and the event's vector, error code
//!   and #PF address become the outcome's exception.
//! * IOPL 0, so port I/O, CLI/STI and the other privileged instructions raise #GP(0).
//!
//! The oracle's conventions (its README): the saved RIP is the faulting instruction
//! for faults and the next instruction for traps (#BP, #OF); completion is the `int3`
//! terminator at [`Case::end_rip`].

use hyperplug_emulator::cpu::{DtReg, Seg, SegReg};
use hyperplug_emulator::model::{CpuModel, CpuidEntry};
use hyperplug_emulator::{
    Cpu, Engine, EventKind, FlatBus, InterceptKind, InterceptPolicy, SUPPORTED,
};
use hyperplug_oracle::case::{
    gpr, rflags, vector_has_error_code, CODE_ADDR, CODE_SIZE, DATA_ADDR, DATA_SIZE,
};
use hyperplug_oracle::flags::{flag_effect, from_iced, FlagEffect};
use hyperplug_oracle::{case_for, run_native, show, Case, Exception, GenConfig, Outcome, Regs};
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Physical address of the PML4.
const PML4: u64 = 0x1000;
/// Physical address of the PDPT.
const PDPT: u64 = 0x2000;
/// Physical address of the page directory (covers linear 0-1 GiB).
const PD: u64 = 0x3000;
/// Page table for the code page.
const PT_CODE: u64 = 0x4000;
/// Page table for the data area.
const PT_DATA: u64 = 0x5000;
/// Page table for the system pages (GDT, IDT, handler), identity-mapped, supervisor.
const PT_SYS: u64 = 0x6000;
/// GDT (linear = physical).
const GDT: u64 = 0x8000;
/// IDT (linear = physical).
const IDT: u64 = 0x9000;
/// The (never entered) exception handler's page.
const HANDLER: u64 = 0xa000;
/// Physical address of the code page.
const CODE_PHYS: u64 = 0x10000;
/// Physical address of the data area.
const DATA_PHYS: u64 = 0x20000;
/// RAM size of the emulated machine.
const RAM: usize = 0x30000;

/// Linux's user code selector (GDT index 6, RPL 3).
const USER_CS: u16 = 0x33;
/// Linux's user data/stack selector (GDT index 5, RPL 3).
const USER_SS: u16 = 0x2b;
/// Kernel code selector used by the IDT gates.
const KERNEL_CS: u16 = 0x10;

/// Page-table entry bits (SDM vol. 3, 4.5, Tables 4-15 to 4-20).
const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const NX: u64 = 1 << 63;

/// CR0 as Linux runs it: PE, MP, ET, NE, WP, AM, PG (SDM vol. 3, 2.5).
const CR0: u64 = 0x8005_0033;
/// CR4.PAE (SDM vol. 3, 2.5).
const CR4: u64 = 0x20;
/// EFER: SCE, LME, LMA, NXE (SDM vol. 3, 2.2.1, Table 2-1 of vol. 4).
const EFER: u64 = 0xd01;

/// Default step budget per case (the generator's snippets are short; REP counts
/// and LOOP counts are bounded).
pub const DEFAULT_BUDGET: u64 = 1_000_000;

/// Why the emulator did not produce an outcome comparable with the oracle's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmuError {
    /// The case does not fit the machine (code or data too large).
    BadCase(String),
    /// The emulator stopped for something other than the terminator or an exception.
    Stopped(String),
}

impl std::fmt::Display for EmuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmuError::BadCase(m) => write!(f, "bad case: {m}"),
            EmuError::Stopped(m) => write!(f, "emulator stopped: {m}"),
        }
    }
}

impl std::error::Error for EmuError {}

/// The first instruction of `case` whose mnemonic the emulator does not claim to
/// support ([`SUPPORTED`]) or that is in `exclude`, by linear decode (generated
/// branches only land on instruction starts, so this sees every instruction that
/// can run).
pub fn unsupported_mnemonic(case: &Case, exclude: &[Mnemonic]) -> Option<Mnemonic> {
    let mut d = Decoder::with_ip(64, &case.code, CODE_ADDR, DecoderOptions::NONE);
    while d.can_decode() {
        let m = d.decode().mnemonic();
        if !SUPPORTED.contains(&m) || exclude.contains(&m) {
            return Some(m);
        }
    }
    None
}

/// Parses a comma-separated list of iced-x86 mnemonic names (as `{:?}` prints
/// them, case-insensitive, e.g. `xadd,Cmpxchg`).
pub fn parse_mnemonics(list: &str) -> Result<Vec<Mnemonic>, String> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let m = Mnemonic::values()
            .find(|m| format!("{m:?}").eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("unknown mnemonic {name}"))?;
        out.push(m);
    }
    Ok(out)
}

/// A reusable emulated user-mode machine that runs cases one after another.
pub struct EmuRunner {
    bus: FlatBus,
    eng: Engine,
    policy: InterceptPolicy,
    budget: u64,
}

impl std::fmt::Debug for EmuRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmuRunner")
            .field("budget", &self.budget)
            .finish()
    }
}

impl Default for EmuRunner {
    fn default() -> Self {
        Self::new()
    }
}

/// A flat 64-bit segment descriptor's cache (SDM vol. 3, 3.4.5).
fn flat_seg(selector: u16, code: bool) -> Seg {
    Seg {
        selector,
        base: 0,
        limit: 0xffff_ffff,
        typ: if code { 0xb } else { 0x3 },
        s: true,
        dpl: 3,
        present: true,
        avl: false,
        l: code,
        db: !code,
        g: true,
        unusable: false,
    }
}

/// A 64-bit interrupt gate (SDM vol. 3, 6.14.1, Figure 6-8): type 0xE, present.
fn gate(offset: u64, selector: u16, dpl: u64) -> [u8; 16] {
    let lo = (offset & 0xffff)
        | (u64::from(selector) << 16)
        | ((0x8e | (dpl << 5)) << 40)
        | (((offset >> 16) & 0xffff) << 48);
    let hi = offset >> 32;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&lo.to_le_bytes());
    b[8..].copy_from_slice(&hi.to_le_bytes());
    b
}

/// Sets CPUID bit `bit` of output register `reg` (EAX=0 .. EDX=3) of `leaf`
/// (subleaf 0) in `model`, adding the leaf if it is missing.
fn set_cpuid_bit(model: &mut CpuModel, leaf: u32, reg: usize, bit: u32, on: bool) {
    let idx = match model.entries.iter().position(|e| e.leaf == leaf) {
        Some(i) => i,
        None => {
            model.entries.push(CpuidEntry {
                leaf,
                subleaf: (leaf == 7).then_some(0),
                regs: [0; 4],
            });
            model.entries.len() - 1
        }
    };
    if on {
        model.entries[idx].regs[reg] |= 1 << bit;
    } else {
        model.entries[idx].regs[reg] &= !(1 << bit);
    }
}

/// Makes the emulator's CPUID model report the optional user-mode instructions the
/// host has (the generator emits exactly those), so feature-gated instructions are
/// valid or #UD on both sides alike. Bits (SDM vol. 2A, CPUID, Tables 3-8 and 3-10;
/// AMD APM vol. 3, E.4.2): 80000001H:ECX[0] LAHF-SAHF (always present with
/// the generator's LAHF/SAHF in 64-bit mode, which the host executed), [5] LZCNT;
/// 01H:ECX[22] MOVBE, [23] POPCNT; 07H:EBX[3] BMI1, [8] BMI2, [19] ADX.
pub fn mirror_host_features(model: &mut CpuModel) {
    let f = hyperplug_oracle::cpu::Features::host();
    set_cpuid_bit(model, 0x8000_0001, 2, 0, true);
    set_cpuid_bit(model, 0x8000_0001, 2, 5, f.lzcnt);
    set_cpuid_bit(model, 1, 2, 22, f.movbe);
    set_cpuid_bit(model, 1, 2, 23, f.popcnt);
    set_cpuid_bit(model, 7, 1, 3, f.bmi1);
    set_cpuid_bit(model, 7, 1, 8, f.bmi2);
    set_cpuid_bit(model, 7, 1, 19, f.adx);
    // Leaf 7 must be within the maximum basic leaf (CPUID.0:EAX).
    if let Some(l0) = model.entries.iter_mut().find(|e| e.leaf == 0) {
        l0.regs[0] = l0.regs[0].max(7);
    }
}

impl EmuRunner {
    /// A machine with the page tables, GDT and IDT described in the module docs.
    pub fn new() -> Self {
        let mut bus = FlatBus::new(RAM);
        let mut put = |gpa: u64, v: u64| {
            let ok = bus.load(gpa, &v.to_le_bytes());
            debug_assert!(ok, "static layout fits in RAM");
        };
        let upper = P | RW | US;
        put(PML4, PDPT | upper);
        put(PDPT, PD | upper);
        put(PD, PT_SYS | upper);
        put(PD + 8 * ((CODE_ADDR >> 21) & 511), PT_CODE | upper);
        put(PD + 8 * ((DATA_ADDR >> 21) & 511), PT_DATA | upper);
        put(
            PT_CODE + 8 * ((CODE_ADDR >> 12) & 511),
            CODE_PHYS | P | RW | US,
        );
        for i in 0..(DATA_SIZE as u64 / 4096) {
            let e = (DATA_PHYS + i * 4096) | P | RW | US | NX;
            put(PT_DATA + 8 * (((DATA_ADDR >> 12) + i) & 511), e);
        }
        for (page, nx) in [(GDT, NX), (IDT, NX), (HANDLER, 0)] {
            put(PT_SYS + 8 * ((page >> 12) & 511), page | P | RW | nx);
        }
        // GDT as Linux lays it out: 0x10 kernel CS, 0x18 kernel DS, 0x23 user32 CS,
        // 0x2b user DS, 0x33 user CS (descriptor format: SDM vol. 3, 3.4.5).
        let gdt: [u64; 7] = [
            0,
            0,
            0x00af_9b00_0000_ffff,
            0x00cf_9300_0000_ffff,
            0x00cf_fb00_0000_ffff,
            0x00cf_f300_0000_ffff,
            0x00af_fb00_0000_ffff,
        ];
        for (i, d) in gdt.iter().enumerate() {
            put(GDT + 8 * i as u64, *d);
        }
        // The handler page holds HLT; nothing ever jumps there.
        bus.load(HANDLER, &[0xf4]);
        for v in 0..256u64 {
            let dpl = if matches!(v, 3 | 4) { 3 } else { 0 };
            bus.load(IDT + 16 * v, &gate(HANDLER, KERNEL_CS, dpl));
        }
        let policy = InterceptPolicy {
            exceptions: u32::MAX,
            ..InterceptPolicy::default()
        };
        let mut eng = Engine::standalone();
        mirror_host_features(eng.model_mut());
        Self {
            bus,
            eng,
            policy,
            budget: DEFAULT_BUDGET,
        }
    }

    /// Sets the step budget per case.
    pub fn set_budget(&mut self, steps: u64) {
        self.budget = steps.max(1);
    }

    /// The CPU state a case starts from.
    fn initial_cpu(case: &Case) -> Cpu {
        let mut cpu = Cpu {
            gpr: case.regs.gpr,
            rip: case.regs.rip,
            rflags: (case.regs.rflags & rflags::SETTABLE) | rflags::IF | rflags::FIXED1,
            cr0: CR0,
            cr3: PML4,
            cr4: CR4,
            efer: EFER,
            gdtr: DtReg {
                base: GDT,
                limit: 7 * 8 - 1,
            },
            idtr: DtReg {
                base: IDT,
                limit: 256 * 16 - 1,
            },
            ..Cpu::default()
        };
        cpu.seg[SegReg::Cs as usize] = flat_seg(USER_CS, true);
        cpu.seg[SegReg::Ss as usize] = flat_seg(USER_SS, false);
        for s in [SegReg::Ds, SegReg::Es, SegReg::Fs, SegReg::Gs] {
            cpu.seg[s as usize] = Seg {
                dpl: 3,
                unusable: true,
                ..Seg::default()
            };
        }
        cpu
    }

    /// Runs `case` on the emulator one step at a time, tracking along the path it
    /// takes which status flags are architecturally undefined
    /// ([`hyperplug_oracle::flags::flag_effect`]) and whether any instruction reads
    /// one of them; returns the outcome in the oracle's shape.
    pub fn run(&mut self, case: &Case) -> Result<EmuRun, EmuError> {
        if case.code.len() >= CODE_SIZE {
            return Err(EmuError::BadCase(format!(
                "code is {} bytes; at most {} fit",
                case.code.len(),
                CODE_SIZE - 1
            )));
        }
        if case.data.len() > DATA_SIZE {
            return Err(EmuError::BadCase(format!(
                "data is {} bytes; the area holds {DATA_SIZE}",
                case.data.len()
            )));
        }
        let mut code = vec![0xccu8; CODE_SIZE];
        code[..case.code.len()].copy_from_slice(&case.code);
        let mut data = vec![0u8; DATA_SIZE];
        data[..case.data.len()].copy_from_slice(&case.data);
        self.bus.load(CODE_PHYS, &code);
        self.bus.load(DATA_PHYS, &data);
        self.eng.invalidate_gpa(CODE_PHYS, CODE_SIZE as u64);
        self.eng.invalidate_gpa(DATA_PHYS, DATA_SIZE as u64);
        self.eng.flush();

        let mut cpu = Self::initial_cpu(case);
        let mut undef = 0u64;
        let mut undefined_read = None;
        let mut steps = 0u64;
        let ev = loop {
            let step = step_flags(&code, &cpu);
            let ev = self.eng.execute(&mut cpu, &mut self.bus, &self.policy, 1);
            steps += 1;
            if ev.kind != EventKind::Budget {
                break ev;
            }
            if let Some((reads, effect, text)) = step {
                if reads & undef != 0 && undefined_read.is_none() {
                    undefined_read = Some(format!(
                        "{text} reads {} while undefined",
                        rflags::describe(reads & undef)
                    ));
                }
                undef = effect.apply(undef);
            } else {
                // Not in the code page: nothing known about its flags.
                undef = rflags::STATUS;
            }
            if steps >= self.budget {
                return Err(EmuError::Stopped(format!(
                    "budget of {} steps used up at rip {:#x}",
                    self.budget, cpu.rip
                )));
            }
        };
        let exception = match ev.kind {
            EventKind::Intercept(i) => match i.kind {
                InterceptKind::Exception {
                    vector,
                    error_code,
                    address,
                    ..
                } => {
                    if vector == 3 && i.rip == case.end_rip() {
                        None
                    } else {
                        // #BP and #OF are traps: the saved RIP follows the instruction
                        // (SDM vol. 3, 6.5, Table 6-1).
                        if matches!(vector, 3 | 4) {
                            cpu.rip = i.rip.wrapping_add(u64::from(i.insn_len));
                        } else {
                            cpu.rip = i.rip;
                        }
                        let known = vector_has_error_code(vector);
                        Some(Exception {
                            vector,
                            error_code_known: known,
                            error_code: if known {
                                u64::from(error_code.unwrap_or(0))
                            } else {
                                0
                            },
                            fault_addr: if vector == 14 {
                                address.unwrap_or(0)
                            } else {
                                0
                            },
                        })
                    }
                }
                other => {
                    return Err(EmuError::Stopped(format!(
                        "intercept {other:?} at rip {:#x}",
                        i.rip
                    )))
                }
            },
            other => {
                return Err(EmuError::Stopped(format!(
                    "{other:?} at rip {:#x} after {steps} steps",
                    cpu.rip
                )))
            }
        };
        let data = self
            .bus
            .peek(DATA_PHYS, DATA_SIZE)
            .ok_or_else(|| EmuError::Stopped("data area outside RAM".into()))?;
        Ok(EmuRun {
            outcome: Outcome {
                regs: Regs {
                    gpr: cpu.gpr,
                    rip: cpu.rip,
                    rflags: cpu.rflags,
                },
                data,
                exception,
            },
            path_undefined: undef,
            undefined_read,
        })
    }
}

/// What [`EmuRunner::run`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmuRun {
    /// The outcome, shaped like the oracle's.
    pub outcome: Outcome,
    /// Status flags undefined at the end along the path the emulator took (the
    /// generator's per-offset table cannot see every path, e.g. an indirect CALL
    /// over its flag fixer).
    pub path_undefined: u64,
    /// The first instruction that read a flag undefined along the path (its result
    /// is then not determined by the architecture).
    pub undefined_read: Option<String>,
}

/// The status flags the instruction at `cpu.rip` reads and its flag effect, for one
/// step (one REP iteration counts as the instruction without REP; a REP with a zero
/// count does nothing); `None` outside the code page.
fn step_flags(code: &[u8], cpu: &Cpu) -> Option<(u64, FlagEffect, String)> {
    let off = usize::try_from(cpu.rip.checked_sub(CODE_ADDR)?).ok()?;
    let bytes = code.get(off..)?;
    let mut d = Decoder::with_ip(64, bytes, cpu.rip, DecoderOptions::NONE);
    let i = d.decode();
    if i.is_invalid() {
        return None;
    }
    let text = format!("{:?} at {:#x}", i.mnemonic(), cpu.rip);
    let reads = from_iced(i.rflags_read()) & rflags::STATUS;
    let rep = i.has_rep_prefix() || i.has_repe_prefix() || i.has_repne_prefix();
    if rep && i.is_string_instruction() {
        // A 0x67 prefix makes the count ECX (SDM vol. 1, 3.6.1, Table 3-4).
        let a32 = bytes[..i.len()]
            .iter()
            .take_while(|b| {
                matches!(
                    b,
                    0x26 | 0x2e | 0x36 | 0x3e | 0x64..=0x67 | 0xf0 | 0xf2 | 0xf3
                )
            })
            .any(|b| *b == 0x67);
        let asz_mask = if a32 { 0xffff_ffff } else { u64::MAX };
        if cpu.gpr[gpr::RCX] & asz_mask == 0 {
            return Some((0, FlagEffect::default(), text));
        }
    }
    let size = operand_bits(&i);
    let count = match i.mnemonic() {
        Mnemonic::Shl
        | Mnemonic::Sal
        | Mnemonic::Shr
        | Mnemonic::Sar
        | Mnemonic::Rol
        | Mnemonic::Ror
        | Mnemonic::Rcl
        | Mnemonic::Rcr => Some(count_operand(&i, 1, cpu)),
        Mnemonic::Shld | Mnemonic::Shrd => Some(count_operand(&i, 2, cpu)),
        _ => None,
    };
    Some((reads, flag_effect(i.mnemonic(), size, count), text))
}

/// Operand size in bits of the first operand (64 without operands; string
/// compares by their element size), as the generator measures it.
fn operand_bits(i: &Instruction) -> u32 {
    if i.op_count() == 0 {
        return match i.mnemonic() {
            Mnemonic::Cmpsb | Mnemonic::Scasb => 8,
            Mnemonic::Cmpsw | Mnemonic::Scasw => 16,
            Mnemonic::Cmpsd | Mnemonic::Scasd => 32,
            _ => 64,
        };
    }
    match i.op0_kind() {
        OpKind::Register => i.op0_register().size() as u32 * 8,
        OpKind::Memory => (i.memory_size().size() as u32 * 8).max(8),
        _ => 64,
    }
}

/// The value of count operand `n` (an immediate or CL).
fn count_operand(i: &Instruction, n: u32, cpu: &Cpu) -> u64 {
    match i.op_kind(n) {
        OpKind::Register => cpu.gpr[gpr::RCX] & 0xff,
        OpKind::Immediate8 | OpKind::Immediate8_2nd => i.immediate(n),
        _ => 1,
    }
}

/// The RFLAGS bits compared: the oracle's [`rflags::COMPARED`] minus the flags
/// possibly undefined where the CPU stopped (the case's table) and minus
/// `path_undefined` (see [`EmuRun::path_undefined`]).
pub fn compared_flags(case: &Case, oracle: &Outcome, path_undefined: u64) -> u64 {
    rflags::COMPARED & !(case.undefined_flags_at(oracle.regs.rip) | path_undefined)
}

/// The differences between the oracle's and the emulator's outcome of `case`, one
/// line each (empty when they agree): exception (vector, error code where the
/// vector has one, fault address for #PF), RIP, GPRs, compared RFLAGS, data area.
pub fn differences(case: &Case, oracle: &Outcome, emu: &EmuRun) -> Vec<String> {
    let path_undefined = emu.path_undefined;
    let emu = &emu.outcome;
    let mut out = Vec::new();
    match (&oracle.exception, &emu.exception) {
        (None, None) => {}
        (Some(o), Some(e)) => {
            if o.vector != e.vector {
                out.push(format!("exception: cpu {o}, emulator {e}"));
            } else {
                if o.error_code_known && o.error_code != e.error_code {
                    out.push(format!(
                        "{} error code: cpu {:#x}, emulator {:#x}",
                        o.name(),
                        o.error_code,
                        e.error_code
                    ));
                }
                if o.vector == 14 && o.fault_addr != e.fault_addr {
                    out.push(format!(
                        "#PF address: cpu {:#x}, emulator {:#x}",
                        o.fault_addr, e.fault_addr
                    ));
                }
            }
        }
        (o, e) => out.push(format!(
            "exception: cpu {}, emulator {}",
            o.map_or("none".to_string(), |x| x.to_string()),
            e.map_or("none".to_string(), |x| x.to_string())
        )),
    }
    if oracle.regs.rip != emu.regs.rip {
        out.push(format!(
            "rip: cpu {:#x}, emulator {:#x}",
            oracle.regs.rip, emu.regs.rip
        ));
    }
    for i in 0..16 {
        if oracle.regs.gpr[i] != emu.regs.gpr[i] {
            out.push(format!(
                "{}: cpu {:#018x}, emulator {:#018x}",
                gpr::NAMES[i],
                oracle.regs.gpr[i],
                emu.regs.gpr[i]
            ));
        }
    }
    let mask = compared_flags(case, oracle, path_undefined);
    let (of, ef) = (oracle.regs.rflags & mask, emu.regs.rflags & mask);
    if of != ef {
        out.push(format!(
            "rflags (mask {mask:#x}): cpu {of:#x} [{}], emulator {ef:#x} [{}], differing {}",
            rflags::describe(of),
            rflags::describe(ef),
            rflags::describe(of ^ ef)
        ));
    }
    let changed = show::changed_ranges(&oracle.data, &emu.data);
    for (start, end) in changed.iter().take(8) {
        out.push(format!(
            "data {:#x}: cpu {}, emulator {}",
            DATA_ADDR + *start as u64,
            show::hex(oracle.data.get(*start..*end).unwrap_or(&[])),
            show::hex(emu.data.get(*start..*end).unwrap_or(&[]))
        ));
    }
    if changed.len() > 8 {
        out.push(format!("data: {} more differing ranges", changed.len() - 8));
    }
    out
}

/// A full, reproducible report of a mismatch: the case with the CPU's outcome
/// ([`show::describe`]), the emulator's outcome, and the differences.
pub fn describe_mismatch(case: &Case, oracle: &Outcome, run: &EmuRun) -> String {
    let mut out = show::describe(case, Some(oracle));
    let emu = &run.outcome;
    let _ = writeln!(out, "emulator:");
    match &emu.exception {
        None => {
            let _ = writeln!(out, "  completed");
        }
        Some(e) => {
            let _ = writeln!(out, "  {e} at rip {:#x}", emu.regs.rip);
        }
    }
    for row in 0..4 {
        let _ = write!(out, " ");
        for col in 0..4 {
            let i = row * 4 + col;
            let _ = write!(out, " {:>3}={:016x}", gpr::NAMES[i], emu.regs.gpr[i]);
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "  rip={:#x} rflags={:#x} [{}]",
        emu.regs.rip,
        emu.regs.rflags,
        rflags::describe(emu.regs.rflags)
    );
    let _ = writeln!(out, "differences:");
    if let Some(r) = &run.undefined_read {
        let _ = writeln!(out, "  note: {r}");
    }
    for d in differences(case, oracle, run) {
        let _ = writeln!(out, "  {d}");
    }
    out
}

/// What one differential case gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseResult {
    /// CPU and emulator agree; the outcome's kind (`"completed"`, `"#GP"`, ...).
    Match(&'static str),
    /// Not compared, with the reason (an unsupported mnemonic, a generator or
    /// oracle error such as a CPU-time timeout). Never counted as a pass.
    Skipped(String),
    /// They disagree (or the emulator did not finish): a reproducible report.
    Mismatch(String),
}

/// Generates case `index` of `seed` with `cfg`, runs it on the host CPU
/// ([`run_native`], this thread's oracle) and on `runner`, and compares.
/// Cases with a mnemonic in `exclude` are skipped like unsupported ones.
pub fn diff_case(
    runner: &mut EmuRunner,
    seed: u64,
    index: u64,
    cfg: &GenConfig,
    exclude: &[Mnemonic],
) -> CaseResult {
    let case = match case_for(seed, index, cfg) {
        Ok(c) => c,
        Err(e) => return CaseResult::Skipped(format!("generator: {e}")),
    };
    if let Some(m) = unsupported_mnemonic(&case, exclude) {
        let why = if SUPPORTED.contains(&m) {
            "excluded"
        } else {
            "unsupported"
        };
        return CaseResult::Skipped(format!("{why}: {m:?}"));
    }
    let oracle = match run_native(&case) {
        Ok(o) => o,
        Err(e) => return CaseResult::Skipped(format!("oracle: {e}")),
    };
    let header = format!("seed {seed} case {index}\n");
    match runner.run(&case) {
        Ok(emu) => {
            if differences(&case, &oracle, &emu).is_empty() {
                CaseResult::Match(oracle.kind())
            } else if emu.outcome.regs.rip == oracle.regs.rip
                && !(CODE_ADDR..CODE_ADDR + CODE_SIZE as u64).contains(&oracle.regs.rip)
            {
                // Both went to the same address outside the snippet (e.g. a stack
                // operand hit a return address): what is mapped there differs between
                // the Linux child and the emulated machine.
                CaseResult::Skipped("generator: execution left the code page".into())
            } else if let Some(r) = &emu.undefined_read {
                // The result depends on architecturally undefined flags.
                CaseResult::Skipped(format!(
                    "generator: a flag consumer reads undefined flags: {r}"
                ))
            } else {
                CaseResult::Mismatch(header + &describe_mismatch(&case, &oracle, &emu))
            }
        }
        Err(e) => CaseResult::Mismatch(format!(
            "{header}{}emulator: {e}\n",
            show::describe(&case, Some(&oracle))
        )),
    }
}

/// Counts over a run of differential cases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Cases compared with identical outcomes, by outcome kind.
    pub matched: BTreeMap<&'static str, u64>,
    /// Cases not compared, by reason (see [`CaseResult::Skipped`]).
    pub skipped: BTreeMap<String, u64>,
    /// Mismatch reports (the first few; see `mismatch_count`).
    pub mismatches: Vec<String>,
    /// Number of mismatching cases.
    pub mismatch_count: u64,
}

impl DiffStats {
    /// Number of compared cases that matched.
    pub fn matched_total(&self) -> u64 {
        self.matched.values().sum()
    }

    /// Number of skipped cases.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Records one result, keeping at most `keep` mismatch reports.
    pub fn add(&mut self, r: CaseResult, keep: usize) {
        match r {
            CaseResult::Match(k) => *self.matched.entry(k).or_default() += 1,
            CaseResult::Skipped(why) => {
                // Oracle errors carry addresses; group them by their first words.
                let key = if why.starts_with("oracle:") || why.starts_with("generator:") {
                    why.split(':').take(2).collect::<Vec<_>>().join(":")
                } else {
                    why
                };
                *self.skipped.entry(key).or_default() += 1
            }
            CaseResult::Mismatch(m) => {
                self.mismatch_count += 1;
                if self.mismatches.len() < keep {
                    self.mismatches.push(m);
                }
            }
        }
    }

    /// A short multi-line summary: matched by kind, skipped by reason, mismatches.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "compared and matched: {}; mismatches: {}; skipped: {}",
            self.matched_total(),
            self.mismatch_count,
            self.skipped_total()
        );
        let kinds: Vec<String> = self
            .matched
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(out, "  outcomes: {}", kinds.join(", "));
        for (why, n) in &self.skipped {
            let _ = writeln!(out, "  skipped {n}: {why}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperplug_oracle::case::UNMAPPED_ADDR;

    fn case(code: &[u8]) -> Case {
        let mut regs = Regs {
            rip: CODE_ADDR,
            ..Regs::default()
        };
        regs.gpr[gpr::RSP] = DATA_ADDR + 0xc000;
        regs.gpr[gpr::RBX] = DATA_ADDR + 0x2000;
        Case {
            code: code.to_vec(),
            regs,
            data: vec![0; DATA_SIZE],
            undefined_flags: vec![(0, 0), (code.len() as u32, 0)],
        }
    }

    #[test]
    fn completes_at_terminator() {
        // mov eax, 5; add eax, 7
        let c = case(&[0xb8, 5, 0, 0, 0, 0x83, 0xc0, 7]);
        let o = EmuRunner::new().run(&c).expect("runs").outcome;
        assert_eq!(o.exception, None);
        assert_eq!(o.regs.rip, c.end_rip());
        assert_eq!(o.regs.gpr[gpr::RAX], 12);
    }

    #[test]
    fn exceptions_in_oracle_shape() {
        // (code, vector, error code, fault address, rip offset)
        let table: &[(&[u8], u8, u64, u64, u64)] = &[
            (&[0x0f, 0x0b], 6, 0, 0, 0),             // ud2: #UD, fault
            (&[0x90, 0xcc, 0x90], 3, 0, 0, 2),       // int3: #BP, trap
            (&[0xcd, 0x21], 13, 0x21 * 8 + 2, 0, 0), // int 0x21: #GP(idt)
            (&[0xf4], 13, 0, 0, 0),                  // hlt at CPL3
            (&[0xe4, 0x60], 13, 0, 0, 0),            // in al, 0x60
            (&[0x8b, 0x04, 0x25, 0, 0, 0, 0x30], 14, 4, UNMAPPED_ADDR, 0), // mov eax, [0x30000000]
            (&[0x89, 0x04, 0x25, 0, 0, 0, 0x30], 14, 6, UNMAPPED_ADDR, 0), // store
            (&[0x8b, 0x04, 0x25, 0, 0, 0, 0x10], 0, 0, 0, 0), // read of the code page: fine
        ];
        let mut r = EmuRunner::new();
        for (code, v, ec, addr, off) in table.iter().copied() {
            let c = case(code);
            let o = r.run(&c).expect("runs").outcome;
            if code[0] == 0x8b && code[6] == 0x10 {
                assert_eq!(o.exception, None, "{code:02x?}");
                continue;
            }
            let e = o.exception.expect("exception");
            assert_eq!(
                (e.vector, e.error_code, e.fault_addr, o.regs.rip),
                (v, ec, addr, CODE_ADDR + off),
                "{code:02x?}"
            );
        }
    }

    #[test]
    fn undefined_flags_tracked_along_the_path() {
        // mov eax, 3; mul eax (SF ZF AF PF undefined); lahf (reads them)
        let c = case(&[0xb8, 3, 0, 0, 0, 0xf7, 0xe0, 0x9f]);
        let r = EmuRunner::new().run(&c).expect("runs");
        let want = rflags::SF | rflags::ZF | rflags::AF | rflags::PF;
        assert_eq!(r.path_undefined, want);
        let read = r.undefined_read.expect("lahf reads undefined flags");
        assert!(read.starts_with("Lahf"), "{read}");
        // add eax, 1 defines every status flag again; nothing reads undefined ones.
        let c = case(&[0xf7, 0xe0, 0x83, 0xc0, 1]);
        let r = EmuRunner::new().run(&c).expect("runs");
        assert_eq!((r.path_undefined, r.undefined_read), (0, None));
    }

    #[test]
    fn differences_are_found() {
        let c = case(&[0x90]);
        let run = EmuRunner::new().run(&c).expect("runs");
        let a = run.outcome.clone();
        let mut b = run;
        assert!(differences(&c, &a, &b).is_empty());
        b.outcome.regs.gpr[3] ^= 1;
        b.outcome.data[5] ^= 0xff;
        b.outcome.regs.rflags ^= rflags::CF;
        let d = differences(&c, &a, &b);
        assert_eq!(d.len(), 3, "{d:?}");
        // A flag undefined along the path is not compared.
        b.path_undefined = rflags::CF;
        assert_eq!(differences(&c, &a, &b).len(), 2);
    }
}
