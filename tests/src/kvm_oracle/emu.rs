//! The emulator side: runs a [`KCase`] on [`Engine`] over a [`FlatBus`] holding the
//! same GDT, TSS, interrupt table and page tables as the KVM guest, in the state the
//! harness leaves just before it jumps to the snippet, one step at a time, until the
//! snippet reaches its terminator or raises an exception (the policy intercepts every
//! vector, so the emulator stops before delivering it, as the CPU's state looks at the
//! handler's first instruction apart from the frame).

use super::guest::has_error_code;
use super::layout::{self, CODE, CODE_SIZE, DATA, DATA_SIZE};
use super::{Bits, GuestFeatures, KCase, KException, KOutcome, SysState};
use hyperplug_emulator::{Cpu, Engine, EventKind, FlatBus, InterceptKind, InterceptPolicy};
use hyperplug_oracle::case::rflags;
use hyperplug_oracle::flags::{flag_effect, from_iced, FlagEffect};
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind};

/// Step budget per case (snippets are short; REP counts are at most 16).
pub const BUDGET: u64 = 5_000;

/// The emulator's outcome and what the path says about undefined flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmuRun {
    /// The outcome.
    pub outcome: KOutcome,
    /// Status flags undefined at the end of the path taken.
    pub undefined: u64,
    /// The first instruction that read a flag while it was undefined.
    pub undefined_read: Option<String>,
}

/// A reusable emulated machine.
pub struct KEmu {
    bus: FlatBus,
    eng: Engine,
    policy: InterceptPolicy,
    tsc_aux: u64,
}

impl std::fmt::Debug for KEmu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KEmu").finish()
    }
}

impl Default for KEmu {
    fn default() -> Self {
        Self::new(&GuestFeatures::default())
    }
}

impl KEmu {
    /// A machine with the shared system structures (handler addresses are never used:
    /// every exception is intercepted); IA32_TSC_AUX as the harness sets it for a
    /// guest with `features`.
    pub fn new(features: &GuestFeatures) -> Self {
        let mut bus = FlatBus::new(layout::RAM as usize);
        bus.load(layout::GDT, &layout::gdt());
        bus.load(layout::TSS, &layout::tss());
        for (a, v) in layout::page_tables() {
            bus.load(a, &v.to_le_bytes());
        }
        let mut eng = Engine::standalone();
        crate::emu_runner::mirror_host_features(eng.model_mut());
        KEmu {
            bus,
            eng,
            policy: InterceptPolicy {
                exceptions: u32::MAX,
                ..InterceptPolicy::default()
            },
            tsc_aux: if features.rdtscp || features.rdpid {
                u64::from(super::guest::TSC_AUX)
            } else {
                0
            },
        }
    }

    /// Runs `case`; `terminator` are the bytes the harness appends (so the code
    /// page holds the same bytes on both machines).
    pub fn run(&mut self, case: &KCase, terminator: &[u8]) -> Result<EmuRun, String> {
        let bits = case.bits;
        let mut code = case.code.clone();
        code.extend_from_slice(terminator);
        if code.len() > CODE_SIZE {
            return Err(format!("code is {} bytes", code.len()));
        }
        code.resize(CODE_SIZE, 0xcc);
        let mut data = case.data.clone();
        data.resize(DATA_SIZE, 0);
        let (idt_base, idt) = layout::interrupt_table(bits, &[0; layout::VECTORS as usize]);
        self.bus.load(idt_base, &idt);
        // The case may have marked a TSS descriptor busy (LTR); the harness resets them.
        self.bus.load(layout::GDT, &layout::gdt());
        self.bus.load(CODE, &code);
        self.bus.load(DATA, &data);
        self.eng.invalidate_gpa(0, layout::RAM);
        self.eng.flush();

        let mut cpu = layout::emu_cpu(bits);
        let mask = bits.gpr_mask();
        for i in 0..bits.gprs() {
            cpu.gpr[i] = case.gpr[i] & mask;
        }
        cpu.rflags = (case.rflags & super::COMPARED_FLAGS & !rflags::IF) | 2;
        cpu.cr0 = case.cr0 & mask;
        cpu.cr4 = case.cr4 & mask;
        cpu.cr2 = case.cr2 & mask;
        cpu.msrs.tsc_aux = self.tsc_aux;
        let end = case.end_ip();
        let mut undef = 0u64;
        let mut undefined_read = None;
        let mut steps = 0u64;
        let exception = loop {
            if cpu.rip == end {
                break None;
            }
            if steps >= BUDGET {
                return Err(format!(
                    "budget of {BUDGET} steps used up at {:#x}",
                    cpu.rip
                ));
            }
            let step = step_flags(bits, &code, &cpu);
            let ev = self.eng.execute(&mut cpu, &mut self.bus, &self.policy, 1);
            steps += 1;
            match ev.kind {
                EventKind::Budget => {}
                EventKind::Intercept(i) => match i.kind {
                    InterceptKind::Exception {
                        vector, error_code, ..
                    } => {
                        // #BP and #OF are traps: the saved IP follows the instruction
                        // (SDM vol. 3, 6.5, Table 6-1).
                        cpu.rip = if matches!(vector, 3 | 4) {
                            i.rip.wrapping_add(u64::from(i.insn_len))
                        } else {
                            i.rip
                        };
                        break Some(KException {
                            vector,
                            error_code: has_error_code(bits, vector)
                                .then_some(error_code.unwrap_or(0)),
                        });
                    }
                    other => return Err(format!("intercept {other:?} at {:#x}", i.rip)),
                },
                other => return Err(format!("{other:?} at {:#x}", cpu.rip)),
            }
            match step {
                Some((reads, effect, text)) => {
                    if reads & undef != 0 && undefined_read.is_none() {
                        undefined_read = Some(format!(
                            "{text} reads {} while undefined",
                            rflags::describe(reads & undef)
                        ));
                    }
                    undef = effect.apply(undef);
                }
                None => undef = rflags::STATUS,
            }
        };
        let ip_mask = if bits == Bits::Real16 { 0xffff } else { mask };
        let data = self
            .bus
            .peek(DATA, DATA_SIZE)
            .ok_or("the data area is outside RAM")?;
        let mut gpr = [0u64; 16];
        for (i, g) in gpr.iter_mut().enumerate().take(bits.gprs()) {
            *g = cpu.gpr[i] & mask;
        }
        Ok(EmuRun {
            outcome: KOutcome {
                gpr,
                rflags: cpu.rflags,
                ip: cpu.rip & ip_mask,
                exception,
                data,
                sys: self.sys_state(bits, &cpu)?,
            },
            undefined: undef,
            undefined_read,
        })
    }
}

impl KEmu {
    /// The system registers as the harness reads them (see [`SysState`]).
    fn sys_state(&self, bits: Bits, cpu: &Cpu) -> Result<SysState, String> {
        let mask = bits.gpr_mask();
        let prot = bits != Bits::Real16;
        let access = |sel: u16| -> Result<u8, String> {
            let b = self
                .bus
                .peek(layout::GDT + u64::from(sel) + layout::ACCESS_BYTE, 1)
                .ok_or("the GDT is outside RAM")?;
            Ok(b.first().copied().unwrap_or(0))
        };
        Ok(SysState {
            cr: [
                cpu.cr0 & mask,
                cpu.cr2 & mask,
                cpu.cr3 & mask,
                cpu.cr4 & mask,
                if bits == Bits::Long64 { cpu.cr8 } else { 0 },
            ],
            gdtr: (cpu.gdtr.limit, cpu.gdtr.base & mask),
            idtr: (cpu.idtr.limit, cpu.idtr.base & mask),
            tr: if prot { cpu.tr.selector } else { 0 },
            ldtr: if prot { cpu.ldtr.selector } else { 0 },
            tss_access: if prot {
                [access(layout::TSS_SEL)?, access(layout::TSS2_SEL)?]
            } else {
                [0; 2]
            },
        })
    }
}

/// The status flags the instruction at `cpu.rip` reads and its flag effect (a REP
/// string instruction with a zero count does nothing); `None` outside the code slot.
fn step_flags(bits: Bits, code: &[u8], cpu: &Cpu) -> Option<(u64, FlagEffect, String)> {
    let off = usize::try_from(cpu.rip.checked_sub(CODE)?).ok()?;
    let bytes = code.get(off..)?;
    let mut d = Decoder::with_ip(bits.width(), bytes, cpu.rip, DecoderOptions::NONE);
    let i = d.decode();
    if i.is_invalid() {
        return None;
    }
    let text = format!("{:?} at {:#x}", i.code(), cpu.rip);
    let reads = from_iced(i.rflags_read()) & rflags::STATUS;
    let rep = i.has_rep_prefix() || i.has_repe_prefix() || i.has_repne_prefix();
    if rep && i.is_string_instruction() {
        // The count register follows the address size (SDM vol. 2B, REP), which the
        // string operands' kinds carry.
        let asz = (0..i.op_count())
            .find_map(|n| match i.op_kind(n) {
                OpKind::MemorySegSI | OpKind::MemorySegDI | OpKind::MemoryESDI => Some(0xffff),
                OpKind::MemorySegESI | OpKind::MemorySegEDI | OpKind::MemoryESEDI => {
                    Some(0xffff_ffff)
                }
                _ => None,
            })
            .unwrap_or(u64::MAX);
        if cpu.gpr[1] & asz == 0 {
            return Some((0, FlagEffect::default(), text));
        }
    }
    let size = operand_bits(&i, bits);
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

/// Operand size in bits of the first operand (string compares by element size).
fn operand_bits(i: &Instruction, bits: Bits) -> u32 {
    match i.mnemonic() {
        Mnemonic::Cmpsb | Mnemonic::Scasb => return 8,
        Mnemonic::Cmpsw | Mnemonic::Scasw => return 16,
        Mnemonic::Cmpsd | Mnemonic::Scasd => return 32,
        Mnemonic::Cmpsq | Mnemonic::Scasq => return 64,
        _ => {}
    }
    if i.op_count() == 0 {
        return bits.width();
    }
    match i.op0_kind() {
        OpKind::Register => i.op0_register().size() as u32 * 8,
        OpKind::Memory => (i.memory_size().size() as u32 * 8).max(8),
        _ => bits.width(),
    }
}

/// The value of count operand `n` (an immediate, CL, or 1).
fn count_operand(i: &Instruction, n: u32, cpu: &Cpu) -> u64 {
    match i.op_kind(n) {
        OpKind::Register => cpu.gpr[1] & 0xff,
        OpKind::Immediate8 | OpKind::Immediate8_2nd => i.immediate(n),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bits: Bits, code: &[u8]) -> EmuRun {
        let mut gpr = [0u64; 16];
        gpr[4] = DATA + 0xc0;
        gpr[3] = DATA + 0x40;
        let c = KCase::new(bits, code.to_vec(), gpr, 0, vec![0; DATA_SIZE]);
        // The terminator is never executed: the run stops at its address.
        KEmu::default().run(&c, &[0xf4]).expect("runs")
    }

    #[test]
    fn completes_faults_and_traps_in_every_mode() {
        for bits in Bits::ALL {
            // mov eax, 5 (B8 + imm in the mode's operand size); add al, 7
            let mut code = vec![0xb8, 5, 0];
            if bits.width() != 16 {
                code.extend_from_slice(&[0, 0]);
            }
            code.extend_from_slice(&[0x04, 7]);
            let r = run(bits, &code);
            assert_eq!(r.outcome.exception, None, "{bits}");
            assert_eq!(r.outcome.gpr[0], 12, "{bits}");
            assert_eq!(r.outcome.ip, CODE + code.len() as u64, "{bits}");
            // xor cx, cx / xor ecx, ecx; div cl: #DE at the DIV (a fault).
            let r = run(bits, &[0x31, 0xc9, 0xf6, 0xf1]);
            let e = r.outcome.exception.expect("#DE");
            assert_eq!((e.vector, r.outcome.ip), (0, CODE + 2), "{bits}");
            // nop; int3: #BP, a trap, so the saved IP follows it.
            let r = run(bits, &[0x90, 0xcc, 0x90]);
            let e = r.outcome.exception.expect("#BP");
            assert_eq!((e.vector, r.outcome.ip), (3, CODE + 2), "{bits}");
            // mov [bx/ebx/rbx], al writes the data area.
            let code: &[u8] = if bits.width() == 16 {
                &[0xb0, 0x5a, 0x88, 0x07]
            } else {
                &[0xb0, 0x5a, 0x88, 0x03]
            };
            let r = run(bits, code);
            assert_eq!(r.outcome.data[0x40], 0x5a, "{bits}");
        }
    }

    #[test]
    fn undefined_flags_follow_the_path() {
        // mul cl leaves SF ZF AF PF undefined; add defines them again.
        let r = run(Bits::Prot32, &[0xf6, 0xe1]);
        assert_eq!(
            r.undefined,
            rflags::SF | rflags::ZF | rflags::AF | rflags::PF
        );
        let r = run(Bits::Prot32, &[0xf6, 0xe1, 0x04, 1]);
        assert_eq!(r.undefined, 0);
        // mul cl; lahf reads the undefined flags.
        let r = run(Bits::Prot32, &[0xf6, 0xe1, 0x9f]);
        assert!(r.undefined_read.is_some());
    }
}
