//! The batch harness and the KVM side of the oracle.
//!
//! The harness (one per mode, at [`HARNESS`]) loops over the input records: it copies
//! a record's registers to [`CUR`], its code to [`CODE`] and its data to [`DATA`]
//! (`rep movs`), loads RFLAGS with `popf` from `CUR+0x80`, then the GPRs with `mov`
//! (which leaves the flags alone), the stack pointer last, and jumps to the snippet.
//! The snippet's terminator jumps to `back`, which stores the GPRs with `mov`, then
//! switches to the harness stack to read RFLAGS with `pushf`. Exception handlers (one
//! stub per vector storing the vector, then a common part) store the GPRs, the error
//! code and the saved IP and FLAGS from the frame. Either way the data area is copied
//! to [`OUT`] and `OUT` to the output record, and the loop goes on; after the last
//! case the guest powers off (ACPI PM1a_CNT at port 0x604, SLP_EN).
//!
//! With IF = 0 throughout and no devices, nothing but the snippet's own exceptions
//! enters a handler.

use super::layout::{self, cur, out, *};
use super::{Bits, GuestFeatures, KCase, KException, KOutcome, KvmResult, SysState};
use hyperplug::image::{BootSetup, Mode};
use hyperplug::plugin::{Inventory, LoadedBackend, PluginPath};
use hyperplug::run::{Machine, MachineConfig, Outcome, Trace};
use hyperplug_plugin_api::state::{Regs, Sregs};
use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, Code, Encoder, IcedError, Instruction};
use std::path::Path;
use vm_memory::{Bytes, GuestAddress};

/// Vectors whose exceptions push an error code in protected and long mode
/// (SDM vol. 3, 6.3.1, Table 6-1).
pub fn has_error_code(bits: Bits, vector: u8) -> bool {
    bits != Bits::Real16 && matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// An assembled harness.
#[derive(Debug, Clone)]
pub struct Harness {
    /// Code at [`HARNESS`].
    pub code: Vec<u8>,
    /// Where a snippet's terminator jumps.
    pub back: u64,
    /// Handler address per vector.
    pub handlers: Vec<u64>,
}

/// Assembles the harness for `bits`.
pub fn harness(bits: Bits) -> Result<Harness, String> {
    let r = match bits {
        Bits::Real16 => harness16(),
        Bits::Prot16 => harness16p(),
        Bits::Prot32 => harness32(),
        Bits::Long64 => harness64(),
    };
    let h = r.map_err(|e| format!("assembling the {bits} harness: {e}"))?;
    if h.code.len() > HARNESS_MAX {
        return Err(format!("the {bits} harness is {} bytes", h.code.len()));
    }
    Ok(h)
}

/// The snippet's terminator: a near `jmp` from its end to `back`.
pub fn terminator(case: &KCase, back: u64) -> Result<Vec<u8>, String> {
    let code = match case.bits {
        Bits::Real16 | Bits::Prot16 => Code::Jmp_rel16,
        Bits::Prot32 => Code::Jmp_rel32_32,
        Bits::Long64 => Code::Jmp_rel32_64,
    };
    let i = Instruction::with_branch(code, back).map_err(|e| e.to_string())?;
    let mut enc = Encoder::new(case.bits.width());
    enc.encode(&i, case.end_ip()).map_err(|e| e.to_string())?;
    Ok(enc.take_buffer())
}

/// ACPI S5 through PM1a_CNT (port 0x604, SLP_EN = 0x2000), then `hlt`.
fn power_off(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(dx, 0x604u32)?;
    a.mov(ax, 0x2000u32)?;
    a.out(dx, ax)?;
    a.hlt()
}

/// IA32_TSC_AUX (SDM vol. 4, Table 2-2): the harness sets it to [`TSC_AUX`] when the
/// guest's CPUID has RDTSCP or RDPID ([`CTRL`]+0x40 non-zero).
const MSR_TSC_AUX: u32 = 0xc000_0103;
/// The IA32_TSC_AUX value both machines get.
pub const TSC_AUX: u32 = 0x5a3c_0017;
/// Control-block word that asks the harness to set IA32_TSC_AUX.
const CTRL_SET_TSC_AUX: u64 = CTRL + 0x40;

/// Once, at the harness's start: IA32_TSC_AUX ← [`TSC_AUX`] if asked.
fn set_tsc_aux(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut skip = a.create_label();
    a.cmp(dword_ptr(CTRL_SET_TSC_AUX), 0)?;
    a.je(skip)?;
    a.mov(ecx, MSR_TSC_AUX)?;
    a.mov(eax, TSC_AUX)?;
    a.xor(edx, edx)?;
    a.wrmsr()?;
    a.set_label(&mut skip)?;
    a.nop()
}

/// Before each case: GDTR and IDTR from [`HGDTR`]/[`HIDTR`]; in protected modes both
/// TSS descriptors made available again (SDM vol. 3, 8.2.2, type 9) and TR loaded
/// with [`TSS_SEL`] (LTR marks it busy), LDTR null; then CR0, CR4 and CR2 from the
/// case's record, CR8 = 0 in 64-bit mode (SDM vol. 3, 10.8.6.6), CR3 the mode's
/// outside 64-bit mode.
fn restore_sys(a: &mut CodeAssembler, bits: Bits) -> Result<(), IcedError> {
    a.lgdt(ptr(HGDTR))?;
    a.lidt(ptr(HIDTR))?;
    if bits != Bits::Real16 {
        for sel in [TSS_SEL, TSS2_SEL] {
            a.mov(byte_ptr(GDT + u64::from(sel) + ACCESS_BYTE), 0x89u32)?;
        }
        a.mov(ax, u32::from(TSS_SEL))?;
        a.ltr(ax)?;
        a.xor(eax, eax)?;
        a.lldt(ax)?;
    }
    if bits == Bits::Long64 {
        for (f, cr) in [(cur::CR0, cr0), (cur::CR4, cr4), (cur::CR2, cr2)] {
            a.mov(rax, qword_ptr(CUR + f))?;
            a.mov(cr, rax)?;
        }
        a.xor(eax, eax)?;
        a.mov(cr8, rax)?;
    } else {
        for (f, cr) in [(cur::CR0, cr0), (cur::CR4, cr4), (cur::CR2, cr2)] {
            a.mov(eax, dword_ptr(CUR + f))?;
            a.mov(cr, eax)?;
        }
        // Paging is off: the snippet may have written any CR3.
        a.mov(eax, layout::control_regs(bits).1 as u32)?;
        a.mov(cr3, eax)?;
    }
    Ok(())
}

/// After each case (data segments flat or 0): the control registers, GDTR, IDTR, TR,
/// LDTR and the two TSS descriptors' access bytes into [`OUT`].
fn save_sys(a: &mut CodeAssembler, bits: Bits) -> Result<(), IcedError> {
    let crs = [
        (out::CR0, cr0),
        (out::CR2, cr2),
        (out::CR3, cr3),
        (out::CR4, cr4),
    ];
    if bits == Bits::Long64 {
        for (f, cr) in crs {
            a.mov(rax, cr)?;
            a.mov(qword_ptr(OUT + f), rax)?;
        }
        a.mov(rax, cr8)?;
        a.mov(qword_ptr(OUT + out::CR8), rax)?;
    } else {
        for (f, cr) in crs {
            a.mov(eax, cr)?;
            a.mov(dword_ptr(OUT + f), eax)?;
        }
    }
    a.sgdt(ptr(OUT + out::GDTR))?;
    a.sidt(ptr(OUT + out::IDTR))?;
    if bits != Bits::Real16 {
        a.str(word_ptr(OUT + out::TR))?;
        a.sldt(word_ptr(OUT + out::LDTR))?;
        for (sel, f) in [(TSS_SEL, out::TSS_ACCESS), (TSS2_SEL, out::TSS2_ACCESS)] {
            a.mov(al, byte_ptr(GDT + u64::from(sel) + ACCESS_BYTE))?;
            a.mov(byte_ptr(OUT + f), al)?;
        }
    }
    Ok(())
}

const G32: [AsmRegister32; 8] = [eax, ecx, edx, ebx, esp, ebp, esi, edi];
const G64: [AsmRegister64; 16] = [
    rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
];

fn finish_assembly(
    mut a: CodeAssembler,
    back: CodeLabel,
    stubs: &[CodeLabel],
) -> Result<Harness, IcedError> {
    let r = a.assemble_options(HARNESS, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let handlers = stubs
        .iter()
        .map(|l| r.label_ip(l))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Harness {
        back: r.label_ip(&back)?,
        code: r.inner.code_buffer,
        handlers,
    })
}

/// Real mode: 32-bit registers through the operand-size prefix, records addressed
/// by segment (record address / 16).
fn harness16() -> Result<Harness, IcedError> {
    let mut a = CodeAssembler::new(16)?;
    let mut top = a.create_label();
    let mut done = a.create_label();
    let mut back = a.create_label();
    let mut finish = a.create_label();
    let mut common = a.create_label();
    let m = |x: u64| dword_ptr(x);
    a.cli()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(ss, ax)?;
    a.mov(esp, HSTACK_TOP as u32)?;
    set_tsc_aux(&mut a)?;
    a.set_label(&mut top)?;
    a.cld()?;
    a.cmp(m(CTRL), 0)?;
    a.je(done)?;
    a.mov(ax, word_ptr(CTRL + 4))?;
    a.mov(ds, ax)?;
    a.xor(si, si)?;
    for (dst, len) in [
        (CUR, REGS_SIZE),
        (CODE, CODE_SIZE as u64),
        (DATA, DATA_SIZE as u64),
    ] {
        a.mov(di, dst as u32)?;
        a.mov(cx, (len / 2) as u32)?;
        a.rep().movsw()?;
    }
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(m(OUT + out::STATUS), STATUS_PENDING as u32)?;
    restore_sys(&mut a, Bits::Real16)?;
    a.mov(esp, (CUR + 0x80) as u32)?;
    a.popf()?;
    for (i, r) in G32.iter().enumerate() {
        if i != 4 {
            a.mov(*r, m(CUR + 8 * i as u64))?;
        }
    }
    a.mov(esp, m(CUR + 32))?;
    a.jmp(CODE)?;

    a.set_label(&mut back)?;
    for (i, r) in G32.iter().enumerate() {
        a.mov(m(OUT + 8 * i as u64), *r)?;
    }
    a.mov(esp, HSTACK_TOP as u32)?;
    a.pushfd()?;
    a.pop(eax)?;
    a.mov(m(OUT + out::RFLAGS), eax)?;
    a.mov(m(OUT + out::STATUS), STATUS_DONE as u32)?;
    a.mov(m(OUT + out::FRAME), 0u32)?;
    a.mov(m(OUT + out::ERROR), 0u32)?;

    a.set_label(&mut finish)?;
    a.mov(esp, HSTACK_TOP as u32)?;
    a.cld()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    save_sys(&mut a, Bits::Real16)?;
    a.mov(si, DATA as u32)?;
    a.mov(di, (OUT + out::DATA) as u32)?;
    a.mov(cx, (DATA_SIZE / 2) as u32)?;
    a.rep().movsw()?;
    a.mov(ax, word_ptr(CTRL + 8))?;
    a.mov(es, ax)?;
    a.xor(di, di)?;
    a.mov(si, OUT as u32)?;
    a.mov(cx, (RECORD / 2) as u32)?;
    a.rep().movsw()?;
    a.xor(ax, ax)?;
    a.mov(es, ax)?;
    a.add(word_ptr(CTRL + 4), (IN_RECORD / 16) as u32)?;
    a.add(word_ptr(CTRL + 8), (RECORD / 16) as u32)?;
    a.dec(m(CTRL))?;
    a.jmp(top)?;
    a.set_label(&mut done)?;
    power_off(&mut a)?;

    let mut stubs = Vec::new();
    for v in 0..VECTORS {
        let mut l = a.create_label();
        a.set_label(&mut l)?;
        a.mov(m(OUT + out::STATUS), v as u32)?;
        a.jmp(common)?;
        stubs.push(l);
    }
    // Frame at SS:SP: IP, CS, FLAGS (SDM vol. 3, 21.1.4). Segment bases are 0.
    a.set_label(&mut common)?;
    for (i, r) in G32.iter().enumerate() {
        a.mov(m(OUT + 8 * i as u64), *r)?;
    }
    a.mov(m(OUT + out::FRAME), 6u32)?;
    a.mov(m(OUT + out::ERROR), 0u32)?;
    a.mov(bp, sp)?;
    a.movzx(eax, word_ptr(bp))?;
    a.mov(m(OUT + out::IP), eax)?;
    a.movzx(eax, word_ptr(bp + 4))?;
    a.mov(m(OUT + out::RFLAGS), eax)?;
    a.jmp(finish)?;
    finish_assembly(a, back, &stubs)
}

/// `rep movsw` with a 32-bit address size (ESI, EDI, ECX): the records lie above
/// 64 KiB (SDM vol. 2B, MOVS; 0x67 selects the other address size).
fn a32_rep_movsw(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.db(&[0x67, 0xf3, 0xa5])
}

/// Protected mode with a 16-bit code segment: flat 4-GiB data segments, the
/// records reached with 32-bit addressing, exceptions through 32-bit gates into
/// this 16-bit segment (so the frame has 32-bit slots, as in [`harness32`]).
fn harness16p() -> Result<Harness, IcedError> {
    let mut a = CodeAssembler::new(16)?;
    let mut top = a.create_label();
    let mut done = a.create_label();
    let mut back = a.create_label();
    let mut finish = a.create_label();
    let mut common_err = a.create_label();
    let mut common = a.create_label();
    let m = |x: u64| dword_ptr(x);
    a.cli()?;
    a.mov(esp, HSTACK_TOP as u32)?;
    set_tsc_aux(&mut a)?;
    a.set_label(&mut top)?;
    a.cld()?;
    a.cmp(m(CTRL), 0)?;
    a.je(done)?;
    a.mov(esi, m(CTRL + 4))?;
    for (dst, len) in [
        (CUR, REGS_SIZE),
        (CODE, CODE_SIZE as u64),
        (DATA, DATA_SIZE as u64),
    ] {
        a.mov(edi, dst as u32)?;
        a.mov(ecx, (len / 2) as u32)?;
        a32_rep_movsw(&mut a)?;
    }
    a.mov(m(OUT + out::STATUS), STATUS_PENDING as u32)?;
    restore_sys(&mut a, Bits::Prot16)?;
    a.mov(esp, (CUR + 0x80) as u32)?;
    a.popf()?;
    for (i, r) in G32.iter().enumerate() {
        if i != 4 {
            a.mov(*r, m(CUR + 8 * i as u64))?;
        }
    }
    a.mov(esp, m(CUR + 32))?;
    a.jmp(CODE)?;

    a.set_label(&mut back)?;
    for (i, r) in G32.iter().enumerate() {
        a.mov(m(OUT + 8 * i as u64), *r)?;
    }
    a.mov(esp, HSTACK_TOP as u32)?;
    a.pushfd()?;
    a.pop(eax)?;
    a.mov(m(OUT + out::RFLAGS), eax)?;
    a.mov(m(OUT + out::STATUS), STATUS_DONE as u32)?;
    a.mov(m(OUT + out::FRAME), 0u32)?;
    a.mov(m(OUT + out::ERROR), 0u32)?;

    a.set_label(&mut finish)?;
    a.mov(esp, HSTACK_TOP as u32)?;
    a.cld()?;
    save_sys(&mut a, Bits::Prot16)?;
    a.mov(esi, DATA as u32)?;
    a.mov(edi, (OUT + out::DATA) as u32)?;
    a.mov(ecx, (DATA_SIZE / 2) as u32)?;
    a32_rep_movsw(&mut a)?;
    a.mov(esi, OUT as u32)?;
    a.mov(edi, m(CTRL + 8))?;
    a.mov(ecx, (RECORD / 2) as u32)?;
    a32_rep_movsw(&mut a)?;
    a.add(m(CTRL + 4), IN_RECORD as u32)?;
    a.add(m(CTRL + 8), RECORD as u32)?;
    a.dec(m(CTRL))?;
    a.jmp(top)?;
    a.set_label(&mut done)?;
    power_off(&mut a)?;

    let mut stubs = Vec::new();
    for v in 0..VECTORS {
        let mut l = a.create_label();
        a.set_label(&mut l)?;
        a.mov(m(OUT + out::STATUS), v as u32)?;
        if has_error_code(Bits::Prot16, v as u8) {
            a.jmp(common_err)?;
        } else {
            a.jmp(common)?;
        }
        stubs.push(l);
    }
    // Frame at SS:ESP: [error code,] EIP, CS, EFLAGS (SDM vol. 3, 6.12.1, Figure 6-4).
    for (label, err) in [(&mut common, false), (&mut common_err, true)] {
        a.set_label(label)?;
        for (i, r) in G32.iter().enumerate() {
            a.mov(m(OUT + 8 * i as u64), *r)?;
        }
        let o: u32 = if err { 4 } else { 0 };
        a.mov(m(OUT + out::FRAME), 12 + o)?;
        a.mov(ebp, esp)?;
        if err {
            a.mov(eax, dword_ptr(ebp))?;
        } else {
            a.xor(eax, eax)?;
        }
        a.mov(m(OUT + out::ERROR), eax)?;
        a.mov(eax, dword_ptr(ebp + o))?;
        a.mov(m(OUT + out::IP), eax)?;
        a.mov(eax, dword_ptr(ebp + (o + 8)))?;
        a.mov(m(OUT + out::RFLAGS), eax)?;
        a.jmp(finish)?;
    }
    finish_assembly(a, back, &stubs)
}

/// 32-bit flat protected mode.
fn harness32() -> Result<Harness, IcedError> {
    let mut a = CodeAssembler::new(32)?;
    let mut top = a.create_label();
    let mut done = a.create_label();
    let mut back = a.create_label();
    let mut finish = a.create_label();
    let mut common_err = a.create_label();
    let mut common = a.create_label();
    let m = |x: u64| dword_ptr(x);
    a.cli()?;
    a.mov(esp, HSTACK_TOP as u32)?;
    set_tsc_aux(&mut a)?;
    a.set_label(&mut top)?;
    a.cld()?;
    a.cmp(m(CTRL), 0)?;
    a.je(done)?;
    a.mov(esi, m(CTRL + 4))?;
    for (dst, len) in [
        (CUR, REGS_SIZE),
        (CODE, CODE_SIZE as u64),
        (DATA, DATA_SIZE as u64),
    ] {
        a.mov(edi, dst as u32)?;
        a.mov(ecx, (len / 4) as u32)?;
        a.rep().movsd()?;
    }
    a.mov(m(OUT + out::STATUS), STATUS_PENDING as u32)?;
    restore_sys(&mut a, Bits::Prot32)?;
    a.mov(esp, (CUR + 0x80) as u32)?;
    a.popfd()?;
    for (i, r) in G32.iter().enumerate() {
        if i != 4 {
            a.mov(*r, m(CUR + 8 * i as u64))?;
        }
    }
    a.mov(esp, m(CUR + 32))?;
    a.jmp(CODE)?;

    a.set_label(&mut back)?;
    for (i, r) in G32.iter().enumerate() {
        a.mov(m(OUT + 8 * i as u64), *r)?;
    }
    a.mov(esp, HSTACK_TOP as u32)?;
    a.pushfd()?;
    a.pop(eax)?;
    a.mov(m(OUT + out::RFLAGS), eax)?;
    a.mov(m(OUT + out::STATUS), STATUS_DONE as u32)?;
    a.mov(m(OUT + out::FRAME), 0u32)?;
    a.mov(m(OUT + out::ERROR), 0u32)?;

    a.set_label(&mut finish)?;
    a.mov(esp, HSTACK_TOP as u32)?;
    a.cld()?;
    save_sys(&mut a, Bits::Prot32)?;
    a.mov(esi, DATA as u32)?;
    a.mov(edi, (OUT + out::DATA) as u32)?;
    a.mov(ecx, (DATA_SIZE / 4) as u32)?;
    a.rep().movsd()?;
    a.mov(esi, OUT as u32)?;
    a.mov(edi, m(CTRL + 8))?;
    a.mov(ecx, (RECORD / 4) as u32)?;
    a.rep().movsd()?;
    a.add(m(CTRL + 4), IN_RECORD as u32)?;
    a.add(m(CTRL + 8), RECORD as u32)?;
    a.dec(m(CTRL))?;
    a.jmp(top)?;
    a.set_label(&mut done)?;
    power_off(&mut a)?;

    let mut stubs = Vec::new();
    for v in 0..VECTORS {
        let mut l = a.create_label();
        a.set_label(&mut l)?;
        a.mov(m(OUT + out::STATUS), v as u32)?;
        if has_error_code(Bits::Prot32, v as u8) {
            a.jmp(common_err)?;
        } else {
            a.jmp(common)?;
        }
        stubs.push(l);
    }
    // Frame at ESP: [error code,] EIP, CS, EFLAGS (SDM vol. 3, 6.12.1, Figure 6-4).
    for (label, err) in [(&mut common, false), (&mut common_err, true)] {
        a.set_label(label)?;
        for (i, r) in G32.iter().enumerate() {
            a.mov(m(OUT + 8 * i as u64), *r)?;
        }
        let o: u32 = if err { 4 } else { 0 };
        a.mov(m(OUT + out::FRAME), 12 + o)?;
        a.mov(ebp, esp)?;
        if err {
            a.mov(eax, dword_ptr(ebp))?;
        } else {
            a.xor(eax, eax)?;
        }
        a.mov(m(OUT + out::ERROR), eax)?;
        a.mov(eax, dword_ptr(ebp + o))?;
        a.mov(m(OUT + out::IP), eax)?;
        a.mov(eax, dword_ptr(ebp + (o + 8)))?;
        a.mov(m(OUT + out::RFLAGS), eax)?;
        a.jmp(finish)?;
    }
    finish_assembly(a, back, &stubs)
}

/// 64-bit mode: handlers run on IST 1.
fn harness64() -> Result<Harness, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut top = a.create_label();
    let mut done = a.create_label();
    let mut back = a.create_label();
    let mut finish = a.create_label();
    let mut common_err = a.create_label();
    let mut common = a.create_label();
    let m = |x: u64| qword_ptr(x);
    let d = |x: u64| dword_ptr(x);
    a.cli()?;
    a.mov(rsp, HSTACK_TOP)?;
    set_tsc_aux(&mut a)?;
    a.set_label(&mut top)?;
    a.cld()?;
    a.cmp(d(CTRL), 0)?;
    a.je(done)?;
    a.mov(esi, d(CTRL + 4))?;
    for (dst, len) in [
        (CUR, REGS_SIZE),
        (CODE, CODE_SIZE as u64),
        (DATA, DATA_SIZE as u64),
    ] {
        a.mov(edi, dst as u32)?;
        a.mov(ecx, (len / 8) as u32)?;
        a.rep().movsq()?;
    }
    a.mov(m(OUT + out::STATUS), STATUS_PENDING as i32)?;
    restore_sys(&mut a, Bits::Long64)?;
    a.mov(rsp, CUR + 0x80)?;
    a.popfq()?;
    for (i, r) in G64.iter().enumerate() {
        if i != 4 {
            a.mov(*r, m(CUR + 8 * i as u64))?;
        }
    }
    a.mov(rsp, m(CUR + 32))?;
    a.jmp(CODE)?;

    a.set_label(&mut back)?;
    for (i, r) in G64.iter().enumerate() {
        a.mov(m(OUT + 8 * i as u64), *r)?;
    }
    a.mov(rsp, HSTACK_TOP)?;
    a.pushfq()?;
    a.pop(rax)?;
    a.mov(m(OUT + out::RFLAGS), rax)?;
    a.mov(m(OUT + out::STATUS), STATUS_DONE as i32)?;
    a.mov(m(OUT + out::FRAME), 0)?;
    a.mov(m(OUT + out::ERROR), 0)?;

    a.set_label(&mut finish)?;
    a.mov(rsp, HSTACK_TOP)?;
    a.cld()?;
    save_sys(&mut a, Bits::Long64)?;
    a.mov(esi, DATA as u32)?;
    a.mov(edi, (OUT + out::DATA) as u32)?;
    a.mov(ecx, (DATA_SIZE / 8) as u32)?;
    a.rep().movsq()?;
    a.mov(esi, OUT as u32)?;
    a.mov(edi, d(CTRL + 8))?;
    a.mov(ecx, (RECORD / 8) as u32)?;
    a.rep().movsq()?;
    a.add(d(CTRL + 4), IN_RECORD as i32)?;
    a.add(d(CTRL + 8), RECORD as i32)?;
    a.dec(d(CTRL))?;
    a.jmp(top)?;
    a.set_label(&mut done)?;
    power_off(&mut a)?;

    let mut stubs = Vec::new();
    for v in 0..VECTORS {
        let mut l = a.create_label();
        a.set_label(&mut l)?;
        a.mov(m(OUT + out::STATUS), v as i32)?;
        if has_error_code(Bits::Long64, v as u8) {
            a.jmp(common_err)?;
        } else {
            a.jmp(common)?;
        }
        stubs.push(l);
    }
    // Frame on IST 1: [error code,] RIP, CS, RFLAGS, RSP, SS (SDM vol. 3, 6.14.2, Figure 6-9).
    for (label, err) in [(&mut common, false), (&mut common_err, true)] {
        a.set_label(label)?;
        for (i, r) in G64.iter().enumerate() {
            if i != 4 {
                a.mov(m(OUT + 8 * i as u64), *r)?;
            }
        }
        let o: i32 = if err { 8 } else { 0 };
        a.mov(m(OUT + out::FRAME), 0)?;
        if err {
            a.mov(rax, qword_ptr(rsp))?;
        } else {
            a.xor(eax, eax)?;
        }
        a.mov(m(OUT + out::ERROR), rax)?;
        a.mov(rax, qword_ptr(rsp + o))?;
        a.mov(m(OUT + out::IP), rax)?;
        a.mov(rax, qword_ptr(rsp + (o + 16)))?;
        a.mov(m(OUT + out::RFLAGS), rax)?;
        a.mov(rax, qword_ptr(rsp + (o + 24)))?;
        a.mov(m(OUT + 32), rax)?;
        a.jmp(finish)?;
    }
    finish_assembly(a, back, &stubs)
}

/// The input record of `case`: GPRs, RFLAGS (bit 1 set, IF clear), CR0, CR4, CR2, code with its
/// terminator (padded with `int3`), data.
pub fn input_record(case: &KCase, back: u64) -> Result<Vec<u8>, String> {
    let mut rec = vec![0u8; IN_RECORD as usize];
    for (i, v) in case.gpr.iter().enumerate() {
        rec[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
    }
    let fl = (case.rflags & super::COMPARED_FLAGS & !hyperplug_oracle::case::rflags::IF) | 2;
    rec[0x80..0x88].copy_from_slice(&fl.to_le_bytes());
    for (f, v) in [
        (cur::CR0, case.cr0),
        (cur::CR4, case.cr4),
        (cur::CR2, case.cr2),
    ] {
        let v = v & case.bits.gpr_mask();
        rec[f as usize..f as usize + 8].copy_from_slice(&v.to_le_bytes());
    }
    let mut code = case.code.clone();
    code.extend_from_slice(&terminator(case, back)?);
    if code.len() > CODE_SIZE {
        return Err(format!("code is {} bytes with its terminator", code.len()));
    }
    code.resize(CODE_SIZE, 0xcc);
    let c = REGS_SIZE as usize;
    rec[c..c + CODE_SIZE].copy_from_slice(&code);
    let d = c + CODE_SIZE;
    let n = case.data.len().min(DATA_SIZE);
    rec[d..d + n].copy_from_slice(&case.data[..n]);
    Ok(rec)
}

/// Decodes an output record.
fn outcome(bits: Bits, rec: &[u8]) -> Result<Option<KOutcome>, String> {
    let w = |o: u64| -> u64 {
        let o = o as usize;
        let mut b = [0u8; 8];
        b.copy_from_slice(&rec[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let mask = bits.gpr_mask();
    let mut gpr = [0u64; 16];
    for (i, g) in gpr.iter_mut().enumerate().take(bits.gprs()) {
        *g = w(8 * i as u64) & mask;
    }
    let status = w(out::STATUS) & 0xffff;
    if status == STATUS_PENDING {
        return Ok(None);
    }
    let data = rec[out::DATA as usize..out::DATA as usize + DATA_SIZE].to_vec();
    let sys = sys_state(bits, rec);
    if status == STATUS_DONE {
        return Ok(Some(KOutcome {
            gpr,
            rflags: w(out::RFLAGS),
            ip: 0,
            exception: None,
            data,
            sys,
        }));
    }
    let vector = u8::try_from(status).map_err(|_| format!("bad status {status:#x}"))?;
    // The stack pointer at the fault: the handler's, above the CPU's frame.
    let frame = w(out::FRAME);
    if bits == Bits::Real16 {
        gpr[4] = (gpr[4] & !0xffff) | (gpr[4].wrapping_add(frame) & 0xffff);
    } else if matches!(bits, Bits::Prot16 | Bits::Prot32) {
        gpr[4] = gpr[4].wrapping_add(frame) & mask;
    }
    let ip_mask = if bits == Bits::Real16 { 0xffff } else { mask };
    Ok(Some(KOutcome {
        gpr,
        rflags: w(out::RFLAGS) & ip_mask,
        ip: w(out::IP) & ip_mask,
        exception: Some(KException {
            vector,
            error_code: has_error_code(bits, vector).then_some(w(out::ERROR) as u32),
        }),
        data,
        sys,
    }))
}

/// The system state the harness stored in an output record. Descriptor-table bases
/// are 32 bits outside 64-bit mode (SGDT/SIDT store 4 bytes of base there, SDM vol.
/// 2B, SGDT); STR/SLDT and the GDT bytes are not read in real mode.
fn sys_state(bits: Bits, rec: &[u8]) -> SysState {
    let u = |o: u64, n: usize| -> u64 {
        let o = o as usize;
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&rec[o..o + n]);
        u64::from_le_bytes(b)
    };
    let mask = bits.gpr_mask();
    let bw = if bits == Bits::Long64 { 8 } else { 4 };
    let dt = |o: u64| (u(o, 2) as u16, u(o + 2, bw));
    let prot = bits != Bits::Real16;
    SysState {
        cr: [
            u(out::CR0, 8) & mask,
            u(out::CR2, 8) & mask,
            u(out::CR3, 8) & mask,
            u(out::CR4, 8) & mask,
            if bits == Bits::Long64 {
                u(out::CR8, 8)
            } else {
                0
            },
        ],
        gdtr: dt(out::GDTR),
        idtr: dt(out::IDTR),
        tr: if prot { u(out::TR, 2) as u16 } else { 0 },
        ldtr: if prot { u(out::LDTR, 2) as u16 } else { 0 },
        tss_access: if prot {
            [
                rec[out::TSS_ACCESS as usize],
                rec[out::TSS2_ACCESS as usize],
            ]
        } else {
            [0; 2]
        },
    }
}

/// The KVM oracle: the kvm backend and the assembled harnesses.
pub struct KvmOracle {
    inventory: Inventory,
    backend: LoadedBackend,
    harness: Vec<(Bits, Harness)>,
    /// VMs created so far.
    pub vms: u64,
    /// The guest's CPUID features, read by a probe case.
    pub features: GuestFeatures,
}

impl std::fmt::Debug for KvmOracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmOracle").field("vms", &self.vms).finish()
    }
}

impl KvmOracle {
    /// Loads the kvm backend from `plugin_dir` and assembles the harnesses.
    pub fn new(plugin_dir: &Path) -> Result<Self, String> {
        let inventory = Inventory::scan(&PluginPath::new(&[plugin_dir.to_path_buf()]));
        let backend = inventory
            .backend("kvm")
            .map_err(|e| format!("kvm backend: {e}"))?;
        let mut harness = Vec::new();
        for b in Bits::ALL {
            harness.push((b, self::harness(b)?));
        }
        let mut o = KvmOracle {
            inventory,
            backend,
            harness,
            vms: 0,
            features: GuestFeatures::default(),
        };
        o.features = o.read_features()?;
        Ok(o)
    }

    /// Runs CPUID leaves 1, 7.0 and 0x80000001 in a 64-bit probe case and reads the
    /// features the generator needs ([`GuestFeatures::from_cpuid`]).
    fn read_features(&mut self) -> Result<GuestFeatures, String> {
        let code = cpuid_probe().map_err(|e| format!("assembling the CPUID probe: {e}"))?;
        let case = KCase::new(Bits::Long64, code, [0; 16], 0, vec![0; DATA_SIZE]);
        match self.probe(&case)? {
            KvmResult::Done(o) if o.exception.is_none() => Ok(GuestFeatures::from_cpuid(
                o.gpr[8] as u32,
                o.gpr[9] as u32,
                o.gpr[10] as u32,
                o.gpr[11] as u32,
            )),
            other => Err(format!("the CPUID probe ended with {other:?}")),
        }
    }

    /// Runs one case alone in a fresh VM.
    pub fn probe(&mut self, case: &KCase) -> Result<KvmResult, String> {
        let mut r = self.run_vm(std::slice::from_ref(case))?;
        r.pop()
            .ok_or_else(|| "the probe VM returned no result".to_string())
    }

    fn harness_for(&self, bits: Bits) -> Result<&Harness, String> {
        self.harness
            .iter()
            .find(|(b, _)| *b == bits)
            .map(|(_, h)| h)
            .ok_or_else(|| format!("no harness for {bits}"))
    }

    /// Where snippets of `bits` jump back to (for the emulator's identical code bytes).
    pub fn back(&self, bits: Bits) -> Result<u64, String> {
        Ok(self.harness_for(bits)?.back)
    }

    /// Runs `cases` (all of one mode) and returns one result per case.
    pub fn run(&mut self, cases: &[KCase]) -> Result<Vec<KvmResult>, String> {
        let mut results = Vec::with_capacity(cases.len());
        while results.len() < cases.len() {
            let start = results.len();
            let end = (start + BATCH).min(cases.len());
            let got = self.run_vm(&cases[start..end])?;
            results.extend(got);
        }
        Ok(results)
    }

    /// One VM over `cases`: stops early after a case that hit an internal error.
    fn run_vm(&mut self, cases: &[KCase]) -> Result<Vec<KvmResult>, String> {
        let Some(first) = cases.first() else {
            return Ok(Vec::new());
        };
        let bits = first.bits;
        let h = self.harness_for(bits)?.clone();
        let cfg = MachineConfig {
            deterministic: false,
            memory: RAM,
            cpus: 1,
            devices: Vec::new(),
            trace: Trace::default(),
        };
        let mut m = Machine::create(&self.backend, &self.inventory, &cfg)
            .map_err(|e| format!("creating the VM: {e}"))?;
        self.vms += 1;
        let mem = m.memory();
        let put = |gpa: u64, b: &[u8]| {
            mem.write_slice(b, GuestAddress(gpa))
                .map_err(|e| format!("writing guest memory at {gpa:#x}: {e}"))
        };
        let (idt_base, idt) = layout::interrupt_table(bits, &h.handlers);
        put(idt_base, &idt)?;
        put(GDT, &layout::gdt())?;
        put(TSS, &layout::tss())?;
        for (a, v) in layout::page_tables() {
            put(a, &v.to_le_bytes())?;
        }
        put(HARNESS, &h.code)?;
        let (inp, outp) = if bits == Bits::Real16 {
            (INPUTS >> 4, OUTPUTS >> 4)
        } else {
            (INPUTS, OUTPUTS)
        };
        let mut ctrl = [0u8; 0x48];
        ctrl[..4].copy_from_slice(&(cases.len() as u32).to_le_bytes());
        ctrl[4..8].copy_from_slice(&(inp as u32).to_le_bytes());
        ctrl[8..12].copy_from_slice(&(outp as u32).to_le_bytes());
        let dt = |at: usize, c: &mut [u8], limit: u16, base: u64| {
            c[at..at + 2].copy_from_slice(&limit.to_le_bytes());
            c[at + 2..at + 10].copy_from_slice(&base.to_le_bytes());
        };
        dt((HGDTR - CTRL) as usize, &mut ctrl, GDT_LIMIT, GDT);
        dt(
            (HIDTR - CTRL) as usize,
            &mut ctrl,
            (idt.len() - 1) as u16,
            idt_base,
        );
        let aux = u32::from(self.features.rdtscp || self.features.rdpid);
        let at = (CTRL_SET_TSC_AUX - CTRL) as usize;
        ctrl[at..at + 4].copy_from_slice(&aux.to_le_bytes());
        put(CTRL, &ctrl)?;
        let mut pending = vec![0u8; RECORD as usize];
        pending[out::STATUS as usize..out::STATUS as usize + 8]
            .copy_from_slice(&STATUS_PENDING.to_le_bytes());
        for (i, c) in cases.iter().enumerate() {
            if c.bits != bits {
                return Err("a batch mixes modes".into());
            }
            put(INPUTS + IN_RECORD * i as u64, &input_record(c, h.back)?)?;
            put(OUTPUTS + RECORD * i as u64, &pending)?;
        }
        let regs = Regs {
            rip: HARNESS,
            rsp: HSTACK_TOP,
            rflags: 2,
            ..Regs::default()
        };
        let setup = BootSetup {
            regs,
            sregs: layout::kvm_sregs(bits, &Sregs::default()),
            description: format!("kvm oracle harness ({bits})"),
            entry: HARNESS,
            mode: match bits {
                Bits::Real16 => Mode::Real,
                Bits::Prot16 | Bits::Prot32 => Mode::Protected,
                Bits::Long64 => Mode::Long,
            },
        };
        m.set_boot_state(&setup)
            .map_err(|e| format!("boot state: {e}"))?;
        let outcome = m.run().map_err(|e| format!("running the VM: {e}"))?;
        let internal = match &outcome {
            Outcome::PowerOff => None,
            Outcome::GuestStopped { what, .. } if what.contains("KVM internal error") => {
                Some(what.clone())
            }
            other => return Err(format!("the {bits} harness VM ended with {other:?}")),
        };
        let mut results = Vec::new();
        let mut rec = vec![0u8; RECORD as usize];
        for (i, c) in cases.iter().enumerate() {
            m.memory()
                .read_slice(&mut rec, GuestAddress(OUTPUTS + RECORD * i as u64))
                .map_err(|e| format!("reading results: {e}"))?;
            match outcome_for(c, &rec)? {
                Some(o) => results.push(KvmResult::Done(Box::new(o))),
                None => match &internal {
                    Some(why) => {
                        results.push(KvmResult::InternalError(why.clone()));
                        break;
                    }
                    None => return Err(format!("case {i} has no result after power-off")),
                },
            }
        }
        if internal.is_some() && results.len() == cases.len() {
            // The error came after every case finished: the harness itself failed.
            if !matches!(results.last(), Some(KvmResult::InternalError(_))) {
                return Err(format!("internal error in the harness: {internal:?}"));
            }
        }
        Ok(results)
    }
}

/// The CPUID probe: R8D ← CPUID.01H:ECX, R9D/R10D ← CPUID.(07H,0):EBX/ECX, R11D ←
/// CPUID.80000001H:EDX.
fn cpuid_probe() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    a.mov(eax, 1u32)?;
    a.xor(ecx, ecx)?;
    a.cpuid()?;
    a.mov(r8d, ecx)?;
    a.mov(eax, 7u32)?;
    a.xor(ecx, ecx)?;
    a.cpuid()?;
    a.mov(r9d, ebx)?;
    a.mov(r10d, ecx)?;
    a.mov(eax, 0x8000_0001u32)?;
    a.xor(ecx, ecx)?;
    a.cpuid()?;
    a.mov(r11d, edx)?;
    a.assemble(CODE)
}

/// [`outcome`] with the completion IP filled in.
fn outcome_for(case: &KCase, rec: &[u8]) -> Result<Option<KOutcome>, String> {
    Ok(outcome(case.bits, rec)?.map(|mut o| {
        if o.exception.is_none() {
            o.ip = case.end_ip();
        }
        o
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};

    #[test]
    fn harnesses_assemble_with_absolute_addresses() {
        for b in Bits::ALL {
            let h = harness(b).expect("assembles");
            assert_eq!(h.handlers.len(), VECTORS as usize);
            assert!((HARNESS..HARNESS + h.code.len() as u64).contains(&h.back));
            // No RIP-relative operands: the harness addresses its blocks absolutely.
            let mut d = Decoder::with_ip(b.width(), &h.code, HARNESS, DecoderOptions::NONE);
            let mut popf = 0;
            for i in d.iter() {
                assert!(!i.is_invalid());
                assert!(!i.is_ip_rel_memory_operand(), "{b}: {:?}", i.code());
                if matches!(
                    i.mnemonic(),
                    Mnemonic::Popf | Mnemonic::Popfd | Mnemonic::Popfq
                ) {
                    popf += 1;
                }
            }
            assert_eq!(popf, 1, "{b}");
        }
    }

    #[test]
    fn terminator_reaches_back() {
        for b in Bits::ALL {
            let h = harness(b).expect("assembles");
            let case = KCase::new(b, vec![0x90; 7], [0; 16], 0, vec![]);
            let t = terminator(&case, h.back).expect("encodes");
            let mut d = Decoder::with_ip(b.width(), &t, case.end_ip(), DecoderOptions::NONE);
            let i = d.decode();
            assert_eq!(i.near_branch_target(), h.back, "{b}");
        }
    }
}
