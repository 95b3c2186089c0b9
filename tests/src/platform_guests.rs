//! Guests for the platform devices: interrupts through the 8259A PIC from
//! the 8254 PIT, and friends. 32-bit protected mode, loaded as raw images at
//! [`RAW_LOAD_ADDR`] with the host's flat GDT (code selector 0x08).

use crate::asm::{
    emit_call_print, emit_debug_exit, emit_halt_forever, emit_power_off, emit_print_str, AsmResult,
};
use crate::kit::{
    assemble_with_data, cstr, emit_print_dec32, Guest, Mode, DEC_BUF_LEN, GUEST_STACK_TOP,
    RAW_LOAD_ADDR,
};
use iced_x86::code_asm::*;

/// Where the guests build their IDT.
pub const IDT_BASE: u32 = 0x9_0000;
/// Number of IDT entries the guests fill (exceptions and both PICs' vectors).
pub const IDT_ENTRIES: u32 = 48;
/// Where the tick counter lives.
pub const COUNTER_ADDR: u32 = 0x9_1000;
/// The debug-exit value an unexpected interrupt or exception reports (status 255).
pub const UNEXPECTED_VECTOR_EXIT: u32 = 0x7f;
/// Ticks the PIT guest waits for.
pub const PIT_TICKS: u32 = 10;
/// The PIT reload value for 100 Hz (1193182 Hz / 100, rounded).
pub const PIT_100HZ: u32 = 11932;
/// Code segment selector of the host's flat GDT for protected-mode images.
const CODE_SELECTOR: u32 = 0x08;

/// Writes a 32-bit interrupt gate for the handler whose address is in EDX at
/// [EDI] (SDM vol. 3, 6.11 "IDT Descriptors", Figure 6-2: offset 15:0,
/// selector, then type 0xE with P=1, DPL=0, offset 31:16).
fn emit_gate(a: &mut CodeAssembler) -> AsmResult<()> {
    a.mov(eax, edx)?;
    a.and(eax, 0xffffu32)?;
    a.or(eax, CODE_SELECTOR << 16)?;
    a.mov(dword_ptr(edi), eax)?;
    a.mov(eax, edx)?;
    a.and(eax, 0xffff_0000u32)?;
    a.or(eax, 0x8e00u32)?;
    a.mov(dword_ptr(edi + 4), eax)?;
    Ok(())
}

/// Programs the 8259A pair as Linux does: ICW1 edge-triggered, cascade, ICW4
/// needed; ICW2 vector bases 0x20/0x28; ICW3 slave on IR2; ICW4 8086 mode
/// (Intel 8259A datasheet, "Initialization Command Words"); then masks all
/// but `master_unmasked` on the master and everything on the slave.
fn emit_pic_init(a: &mut CodeAssembler, master_unmasked: u8) -> AsmResult<()> {
    for (port, v) in [
        (0x20u32, 0x11u32),
        (0xa0, 0x11),
        (0x21, 0x20),
        (0xa1, 0x28),
        (0x21, 0x04),
        (0xa1, 0x02),
        (0x21, 0x01),
        (0xa1, 0x01),
        (0x21, u32::from(!master_unmasked)),
        (0xa1, 0xff),
    ] {
        a.mov(al, v)?;
        a.out(port, al)?;
    }
    Ok(())
}

/// Assembles position-independent 32-bit code (absolute data addresses and
/// relative jumps only), so it can be placed as a data item.
fn pic_code(emit: impl FnOnce(&mut CodeAssembler) -> AsmResult<()>) -> AsmResult<Vec<u8>> {
    let mut a = CodeAssembler::new(32)?;
    emit(&mut a)?;
    Ok(a.assemble(0)?)
}

/// Counts [`PIT_TICKS`] IRQ 0 interrupts from the PIT (channel 0, mode 2,
/// 100 Hz) delivered through the PIC at vector 0x20, halting between them,
/// then prints `10 ticks` and powers off. Any other vector ends the VM
/// through debug-exit with [`UNEXPECTED_VECTOR_EXIT`].
///
/// Cost: about 400 instructions plus ~10 per tick.
pub fn pit_pic_guest() -> AsmResult<Guest> {
    let msg = cstr(&format!("{PIT_TICKS} ticks\n"));
    let mut idtr = Vec::new();
    idtr.extend_from_slice(&((IDT_ENTRIES * 8 - 1) as u16).to_le_bytes());
    idtr.extend_from_slice(&IDT_BASE.to_le_bytes());
    // The handlers are data items so the main code knows their addresses.
    let tick = pic_code(|a| {
        a.push(eax)?;
        a.inc(dword_ptr(COUNTER_ADDR))?;
        a.mov(al, 0x20u32)?; // OCW2 non-specific EOI
        a.out(0x20u32, al)?;
        a.pop(eax)?;
        a.iretd()?;
        Ok(())
    })?;
    let unexpected = pic_code(|a| {
        emit_debug_exit(a, UNEXPECTED_VECTOR_EXIT)?;
        emit_halt_forever(a)
    })?;
    let out = assemble_with_data(
        32,
        RAW_LOAD_ADDR,
        &[&msg, &idtr, &tick, &unexpected],
        |a, addrs| {
            let mut print = a.create_label();
            let mut fill = a.create_label();
            let mut wait = a.create_label();
            a.cli()?;
            a.mov(esp, GUEST_STACK_TOP)?;
            // Every gate → `unexpected`, then vector 0x20 → `tick`.
            a.mov(edi, IDT_BASE)?;
            a.mov(ecx, IDT_ENTRIES)?;
            a.mov(edx, addrs[3] as u32)?;
            a.set_label(&mut fill)?;
            emit_gate(a)?;
            a.add(edi, 8)?;
            a.dec(ecx)?;
            a.jnz(fill)?;
            a.mov(edx, addrs[2] as u32)?;
            a.mov(edi, IDT_BASE + 0x20 * 8)?;
            emit_gate(a)?;
            a.lidt(ptr(addrs[1] as u32))?;
            a.mov(dword_ptr(COUNTER_ADDR), 0u32)?;
            emit_pic_init(a, 0x01)?;
            // PIT channel 0: LSB then MSB, mode 2 (rate generator), binary (8254 control word 0x34).
            a.mov(al, 0x34u32)?;
            a.out(0x43u32, al)?;
            a.mov(al, PIT_100HZ & 0xff)?;
            a.out(0x40u32, al)?;
            a.mov(al, PIT_100HZ >> 8)?;
            a.out(0x40u32, al)?;
            a.sti()?;
            a.set_label(&mut wait)?;
            a.hlt()?;
            a.cmp(dword_ptr(COUNTER_ADDR), PIT_TICKS)?;
            a.jb(wait)?;
            a.cli()?;
            emit_call_print(a, print, addrs[0])?;
            emit_power_off(a)?;
            emit_halt_forever(a)?;
            emit_print_str(a, &mut print)
        },
    )?;
    Ok(Guest {
        bytes: out.bytes,
        load_addr: RAW_LOAD_ADDR,
        entry: RAW_LOAD_ADDR,
        mode: Mode::Protected,
        code: 0..out.code_len,
    })
}

/// Where the real-mode PIT guest is loaded (CS = 0, IP = this).
pub const REAL_MODE_LOAD_ADDR: u64 = 0x8000;
/// Where the real-mode guest keeps its tick counter.
pub const REAL_MODE_COUNTER: u32 = 0x7e00;

/// The real-mode IRQ 0 handler: counts at [`REAL_MODE_COUNTER`], EOIs the
/// master PIC, returns.
fn real_mode_tick_handler() -> AsmResult<Vec<u8>> {
    let mut a = CodeAssembler::new(16)?;
    a.push(ax)?;
    a.inc(word_ptr(REAL_MODE_COUNTER))?;
    a.mov(al, 0x20u32)?; // OCW2 non-specific EOI
    a.out(0x20u32, al)?;
    a.pop(ax)?;
    a.iret()?;
    Ok(a.assemble(0)?)
}

/// Real-mode set-up shared by the PIT guests: interrupts off, flat DS/SS at
/// 0 with a stack below 0x7c00, the IRQ 0 handler at `handler` in the IVT
/// at vector 0x20, the tick counter cleared, the PIC with only IRQ 0
/// unmasked, and PIT channel 0 in mode 2 with `reload`.
fn emit_real_mode_pit_setup(a: &mut CodeAssembler, handler: u64, reload: u32) -> AsmResult<()> {
    a.cli()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(ss, ax)?;
    a.mov(sp, 0x7c00u32)?;
    a.mov(word_ptr(0x20u32 * 4), handler as u32)?;
    a.mov(word_ptr(0x20u32 * 4 + 2), 0u32)?;
    a.mov(word_ptr(REAL_MODE_COUNTER), 0u32)?;
    emit_pic_init(a, 0x01)?;
    a.mov(al, 0x34u32)?;
    a.out(0x43u32, al)?;
    a.mov(al, reload & 0xff)?;
    a.out(0x40u32, al)?;
    a.mov(al, reload >> 8)?;
    a.out(0x40u32, al)?;
    Ok(())
}

/// The real-mode twin of [`pit_pic_guest`]: installs its IRQ 0 handler in the
/// IVT at vector 0x20 (SDM vol. 3, 21.1.4: the IVT holds 4-byte
/// segment:offset pointers), programs the PIC and PIT the same way, counts
/// [`PIT_TICKS`] interrupts with HLT between them, prints `10 ticks` and
/// powers off.
///
/// Why a real-mode twin: a paravirtual KVM (kvm_pvm, as on the build
/// machines) emulates guest CPL0 code in the host kernel, whose instruction
/// emulator returns from interrupts (IRET) only in real mode; the
/// protected-mode guest ends there in KVM_EXIT_INTERNAL_ERROR. Both guests
/// exercise the same host path: PIT timer → IRQ 0 → PIC → INTR → interrupt
/// window → injection.
///
/// Cost: about 250 instructions plus ~8 per tick.
pub fn pit_pic_real_mode_guest() -> AsmResult<Guest> {
    let msg = cstr(&format!("{PIT_TICKS} ticks\n"));
    let tick = real_mode_tick_handler()?;
    let out = assemble_with_data(16, REAL_MODE_LOAD_ADDR, &[&msg, &tick], |a, addrs| {
        let mut print = a.create_label();
        let mut wait = a.create_label();
        a.mov(ax, 0u32)?;
        a.mov(es, ax)?;
        emit_real_mode_pit_setup(a, addrs[1], PIT_100HZ)?;
        a.sti()?;
        a.set_label(&mut wait)?;
        a.hlt()?;
        a.cmp(word_ptr(REAL_MODE_COUNTER), PIT_TICKS)?;
        a.jb(wait)?;
        a.cli()?;
        emit_call_print(a, print, addrs[0])?;
        emit_power_off(a)?;
        emit_halt_forever(a)?;
        emit_print_str(a, &mut print)
    })?;
    Ok(Guest {
        bytes: out.bytes,
        load_addr: REAL_MODE_LOAD_ADDR,
        entry: REAL_MODE_LOAD_ADDR,
        mode: Mode::Real,
        code: 0..out.code_len,
    })
}

/// Vector the LAPIC timer guest's timer uses.
pub const LAPIC_TIMER_VECTOR: u32 = 0x40;
/// Ticks the LAPIC timer guest waits for.
pub const LAPIC_TICKS: u32 = 10;
/// The LAPIC timer's initial count: 1 ms at the host model's 1 GHz timer clock, divide by 1.
pub const LAPIC_INITIAL_COUNT: u32 = 1_000_000;

/// A real-mode guest that takes periodic local APIC timer interrupts
/// (SDM vol. 3, 11.5.4: LVT timer 0x320 with bit 17 = periodic, divide
/// configuration 0x3E0 = 0xB for divide-by-1, initial count 0x380) through
/// its IVT, counts [`LAPIC_TICKS`] of them (EOI at 0xB0 each time), prints
/// `10 lapic ticks` and powers off.
///
/// The local APIC page is at 0xFEE00000, out of reach of real-mode
/// segments, so the guest first enters "unreal mode": it loads DS with a
/// flat 4 GiB data descriptor in protected mode and returns to real mode,
/// keeping the descriptor cache (SDM vol. 3, 3.4.3: the hidden part of a
/// segment register is only reloaded by a segment load). Real mode because a
/// paravirtual KVM cannot return from interrupts in protected mode.
pub fn lapic_timer_guest() -> AsmResult<Guest> {
    let msg = cstr(&format!("{LAPIC_TICKS} lapic ticks\n"));
    // GDT: null, flat 4 GiB data (base 0, limit 0xFFFFF, G=1, D/B=1, type 2 RW, P=1).
    let mut gdt = vec![0u8; 8];
    gdt.extend_from_slice(&0x00cf_9200_0000_ffffu64.to_le_bytes());
    let tick = {
        let mut a = CodeAssembler::new(16)?;
        a.push(ax)?;
        a.push(ebx)?;
        a.inc(word_ptr(REAL_MODE_COUNTER))?;
        a.mov(ebx, 0xFEE0_0000u32)?;
        a.mov(dword_ptr(ebx + 0xB0), 0u32)?; // EOI
        a.pop(ebx)?;
        a.pop(ax)?;
        a.iret()?;
        a.assemble(0)?
    };
    let out = assemble_with_data(
        16,
        REAL_MODE_LOAD_ADDR,
        &[&msg, &tick, &gdt, &[0u8; 6]],
        |a, addrs| {
            let mut print = a.create_label();
            let mut wait = a.create_label();
            a.cli()?;
            a.xor(ax, ax)?;
            a.mov(ds, ax)?;
            a.mov(es, ax)?;
            a.mov(ss, ax)?;
            a.mov(sp, 0x7c00u32)?;
            // GDTR image: limit 15, base = the GDT's address.
            a.mov(word_ptr(addrs[3] as u32), 15u32)?;
            a.mov(dword_ptr(addrs[3] as u32 + 2), addrs[2] as u32)?;
            a.lgdt(ptr(addrs[3] as u32))?;
            a.mov(eax, cr0)?;
            a.or(eax, 1u32)?;
            a.mov(cr0, eax)?;
            a.mov(bx, 0x08u32)?;
            a.mov(ds, bx)?;
            a.and(eax, 0xffff_fffeu32)?;
            a.mov(cr0, eax)?;
            // Back in real mode with DS's cache still flat 4 GiB.
            a.mov(word_ptr(LAPIC_TIMER_VECTOR * 4), addrs[1] as u32)?;
            a.mov(word_ptr(LAPIC_TIMER_VECTOR * 4 + 2), 0u32)?;
            a.mov(word_ptr(REAL_MODE_COUNTER), 0u32)?;
            a.mov(ebx, 0xFEE0_0000u32)?;
            a.mov(dword_ptr(ebx + 0xF0), 0x1FFu32)?; // SVR: software enable
            a.mov(dword_ptr(ebx + 0x3E0), 0xBu32)?; // divide by 1
            a.mov(dword_ptr(ebx + 0x320), (1u32 << 17) | LAPIC_TIMER_VECTOR)?; // periodic
            a.mov(dword_ptr(ebx + 0x380), LAPIC_INITIAL_COUNT)?;
            a.sti()?;
            a.set_label(&mut wait)?;
            a.hlt()?;
            a.cmp(word_ptr(REAL_MODE_COUNTER), LAPIC_TICKS)?;
            a.jb(wait)?;
            a.cli()?;
            a.mov(dword_ptr(ebx + 0x320), 1u32 << 16)?; // mask the timer
            emit_call_print(a, print, addrs[0])?;
            emit_power_off(a)?;
            emit_halt_forever(a)?;
            emit_print_str(a, &mut print)
        },
    )?;
    Ok(Guest {
        bytes: out.bytes,
        load_addr: REAL_MODE_LOAD_ADDR,
        entry: REAL_MODE_LOAD_ADDR,
        mode: Mode::Real,
        code: 0..out.code_len,
    })
}

/// Reads the CMOS RTC (MC146818A registers 0x09 year, 0x08 month, 0x07
/// day, 0x04 hours, 0x02 minutes through index port 0x70 / data port 0x71,
/// BCD as the BIOS default leaves them) after waiting for register A's
/// update-in-progress bit to clear, prints `rtc YY-MM-DD HH:MM` and powers
/// off. Real mode.
pub fn rtc_guest() -> AsmResult<Guest> {
    let prefix = cstr("rtc ");
    let mut line = Vec::new();
    // Template "YY-MM-DD HH:MM\n": the guest fills the digit pairs.
    line.extend_from_slice(b"00-00-00 00:00\n\0");
    let out = assemble_with_data(16, REAL_MODE_LOAD_ADDR, &[&prefix, &line], |a, addrs| {
        let mut print = a.create_label();
        let mut uip = a.create_label();
        a.cli()?;
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.mov(ss, ax)?;
        a.mov(sp, 0x7c00u32)?;
        // Wait while register A's UIP (bit 7) is set.
        a.set_label(&mut uip)?;
        a.mov(al, 0x0au32)?;
        a.out(0x70u32, al)?;
        a.in_(al, 0x71u32)?;
        a.test(al, 0x80u32)?;
        a.jnz(uip)?;
        for (reg, off) in [(0x09u32, 0u32), (0x08, 3), (0x07, 6), (0x04, 9), (0x02, 12)] {
            a.mov(al, reg)?;
            a.out(0x70u32, al)?;
            a.in_(al, 0x71u32)?;
            // BCD byte → two ASCII digits.
            a.mov(ah, al)?;
            a.shr(ah, 4)?;
            a.and(al, 0x0fu32)?;
            a.add(ax, 0x3030u32)?;
            a.mov(byte_ptr(addrs[1] as u32 + off), ah)?;
            a.mov(byte_ptr(addrs[1] as u32 + off + 1), al)?;
        }
        emit_call_print(a, print, addrs[0])?;
        emit_call_print(a, print, addrs[1])?;
        emit_power_off(a)?;
        emit_halt_forever(a)?;
        emit_print_str(a, &mut print)
    })?;
    Ok(Guest {
        bytes: out.bytes,
        load_addr: REAL_MODE_LOAD_ADDR,
        entry: REAL_MODE_LOAD_ADDR,
        mode: Mode::Real,
        code: 0..out.code_len,
    })
}

/// A real-mode guest that reads IA32_APIC_BASE (MSR 0x1B, SDM vol. 3,
/// 11.4.4) and prints its low 32 bits as `apic base XXXXXXXX`, then powers
/// off. The host's local APIC answers: 0xFEE00900 on the BSP (base, EN bit
/// 11, BSP bit 8).
pub fn apic_base_guest() -> AsmResult<Guest> {
    let line = b"apic base 00000000\n\0".to_vec();
    let out = assemble_with_data(16, REAL_MODE_LOAD_ADDR, &[&line], |a, addrs| {
        let mut print = a.create_label();
        let mut nibble = a.create_label();
        let text = addrs[0] as u32;
        a.cli()?;
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.mov(ss, ax)?;
        a.mov(sp, 0x7c00u32)?;
        a.mov(ecx, 0x1Bu32)?;
        a.rdmsr()?;
        a.mov(edx, eax)?;
        // Eight hex digits, most significant first.
        a.mov(di, text + 10)?;
        a.mov(cx, 8u32)?;
        a.set_label(&mut nibble)?;
        a.rol(edx, 4)?;
        a.mov(al, dl)?;
        a.and(al, 0x0fu32)?;
        a.add(al, 0x30u32)?;
        let mut digit = a.create_label();
        a.cmp(al, 0x39u32)?;
        a.jbe(digit)?;
        a.add(al, 0x27u32)?; // 'a'..'f'
        a.set_label(&mut digit)?;
        a.mov(byte_ptr(di), al)?;
        a.inc(di)?;
        a.dec(cx)?;
        a.jnz(nibble)?;
        emit_call_print(a, print, addrs[0])?;
        emit_power_off(a)?;
        emit_halt_forever(a)?;
        emit_print_str(a, &mut print)
    })?;
    Ok(Guest {
        bytes: out.bytes,
        load_addr: REAL_MODE_LOAD_ADDR,
        entry: REAL_MODE_LOAD_ADDR,
        mode: Mode::Real,
        code: 0..out.code_len,
    })
}

/// Where the SMP guest is loaded; its first page is the AP start-up code, so
/// the start-up IPI vector is this address >> 12.
pub const SMP_LOAD_ADDR: u64 = 0x1_0000;
/// Offset of the boot processor's 32-bit entry in the SMP guest.
pub const SMP_BSP_OFFSET: u64 = 0x100;
/// The shared counter the APs increment.
pub const SMP_COUNTER: u32 = 0x7000;
/// How many APs have finished.
pub const SMP_DONE: u32 = 0x7004;
/// Local APIC ICR low register (xAPIC MMIO, SDM vol. 3, 11.6.1).
const ICR_LOW: u32 = 0xFEE0_0300;

/// A multiprocessor guest: the boot processor (32-bit protected mode, entry
/// at [`SMP_LOAD_ADDR`] + [`SMP_BSP_OFFSET`]) sends INIT and two start-up
/// IPIs to all other processors through its local APIC's ICR (SDM vol. 3,
/// 9.4.4.1, the "INIT-SIPI-SIPI" sequence; ICR encodings 11.6.1: 0xC4500 =
/// INIT, level assert, all excluding self; 0xC46vv = start-up with vector
/// vv). Each application processor starts in real mode at the start-up
/// page, adds 1 to a shared counter `iterations` times with `lock add`,
/// counts itself done with `lock inc`, and parks (`cli; hlt`). When `aps`
/// are done, the boot processor prints `total=<counter>` and powers off.
/// The total is exact only if the locked additions are atomic across vCPUs.
pub fn smp_counter_guest(aps: u32, iterations: u32) -> AsmResult<Guest> {
    smp_guest(aps, iterations, false)
}

/// [`smp_counter_guest`] whose BSP also counts how many times it polled
/// for the APs to finish and prints `total=N waits=M`: M depends on how the
/// vCPUs interleave, which `--deterministic` fixes.
pub fn smp_race_guest(aps: u32, iterations: u32) -> AsmResult<Guest> {
    smp_guest(aps, iterations, true)
}

fn smp_guest(aps: u32, iterations: u32, count_waits: bool) -> AsmResult<Guest> {
    let vector = (SMP_LOAD_ADDR >> 12) as u32;
    let ap = {
        let mut a = CodeAssembler::new(16)?;
        let mut again = a.create_label();
        let mut park = a.create_label();
        a.cli()?;
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.mov(ecx, iterations)?;
        a.set_label(&mut again)?;
        a.lock().add(dword_ptr(SMP_COUNTER), 1)?;
        a.dec(ecx)?;
        a.jnz(again)?;
        a.lock().inc(dword_ptr(SMP_DONE))?;
        a.set_label(&mut park)?;
        a.cli()?;
        a.hlt()?;
        a.jmp(park)?;
        a.assemble(SMP_LOAD_ADDR)?
    };
    if ap.len() as u64 > SMP_BSP_OFFSET {
        return Err(crate::asm::AsmError(format!(
            "AP code is {} bytes, more than {SMP_BSP_OFFSET}",
            ap.len()
        )));
    }
    let prefix = cstr("total=");
    let nl = cstr("\n");
    let dec_buf = vec![0u8; DEC_BUF_LEN];
    let waits = cstr(" waits=");
    let bsp_base = SMP_LOAD_ADDR + SMP_BSP_OFFSET;
    let data: [&[u8]; 4] = [&prefix, &nl, &dec_buf, &waits];
    let out = assemble_with_data(32, bsp_base, &data, |a, addrs| {
        let mut print = a.create_label();
        let mut print_dec = a.create_label();
        let mut wait = a.create_label();
        a.cli()?;
        a.mov(esp, GUEST_STACK_TOP)?;
        a.mov(dword_ptr(SMP_COUNTER), 0u32)?;
        a.mov(dword_ptr(SMP_DONE), 0u32)?;
        a.mov(dword_ptr(ICR_LOW), 0x000C_4500u32)?;
        a.mov(dword_ptr(ICR_LOW), 0x000C_4600u32 | vector)?;
        a.mov(dword_ptr(ICR_LOW), 0x000C_4600u32 | vector)?;
        a.xor(edi, edi)?;
        a.set_label(&mut wait)?;
        a.inc(edi)?;
        a.pause()?;
        a.cmp(dword_ptr(SMP_DONE), aps)?;
        a.jb(wait)?;
        emit_call_print(a, print, addrs[0])?;
        a.mov(eax, dword_ptr(SMP_COUNTER))?;
        a.call(print_dec)?;
        if count_waits {
            emit_call_print(a, print, addrs[3])?;
            a.mov(eax, edi)?;
            a.call(print_dec)?;
        }
        emit_call_print(a, print, addrs[1])?;
        emit_power_off(a)?;
        emit_halt_forever(a)?;
        emit_print_dec32(a, &mut print_dec, print, addrs[2])?;
        emit_print_str(a, &mut print)
    })?;
    let mut bytes = ap;
    bytes.resize(SMP_BSP_OFFSET as usize, 0x90);
    let code_end = bytes.len() + out.code_len;
    bytes.extend_from_slice(&out.bytes);
    Ok(Guest {
        bytes,
        load_addr: SMP_LOAD_ADDR,
        entry: bsp_base,
        mode: Mode::Protected,
        code: SMP_BSP_OFFSET as usize..code_end,
    })
}

/// PIT reload for about 1 kHz (1193182 Hz / 1000).
pub const PIT_1KHZ: u32 = 1193;
/// Ticks the spin guest counts across.
pub const SPIN_TICKS: u32 = 3;

/// A real-mode guest whose output depends on *when* timer interrupts arrive:
/// it programs the PIT to about 1 kHz, then increments ECX in a loop until
/// [`SPIN_TICKS`] IRQ 0s have been counted by its handler, prints ECX as 8
/// hex digits and a newline, and powers off. On the host's clock the count
/// varies from run to run; with `--deterministic` it must not.
pub fn pit_spin_guest() -> AsmResult<Guest> {
    let tick = real_mode_tick_handler()?;
    let out = assemble_with_data(16, REAL_MODE_LOAD_ADDR, &[&tick], |a, addrs| {
        let mut spin = a.create_label();
        let mut hex = a.create_label();
        let mut digit = a.create_label();
        emit_real_mode_pit_setup(a, addrs[0], PIT_1KHZ)?;
        a.xor(ecx, ecx)?;
        a.sti()?;
        a.set_label(&mut spin)?;
        a.inc(ecx)?;
        a.cmp(word_ptr(REAL_MODE_COUNTER), SPIN_TICKS)?;
        a.jb(spin)?;
        a.cli()?;
        // Print ECX as 8 hex digits on COM1.
        a.mov(ebx, ecx)?;
        a.mov(si, 8u32)?;
        a.mov(dx, 0x3f8u32)?;
        a.set_label(&mut hex)?;
        a.rol(ebx, 4)?;
        a.mov(al, bl)?;
        a.and(al, 0xfu32)?;
        a.add(al, b'0' as u32)?;
        a.cmp(al, b'9' as u32)?;
        a.jbe(digit)?;
        a.add(al, 7u32)?;
        a.set_label(&mut digit)?;
        a.out(dx, al)?;
        a.dec(si)?;
        a.jnz(hex)?;
        a.mov(al, b'\n' as u32)?;
        a.out(dx, al)?;
        emit_power_off(a)?;
        emit_halt_forever(a)
    })?;
    Ok(Guest {
        bytes: out.bytes,
        load_addr: REAL_MODE_LOAD_ADDR,
        entry: REAL_MODE_LOAD_ADDR,
        mode: Mode::Real,
        code: 0..out.code_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_all;

    #[test]
    fn smp_guest_layout() {
        let g = smp_counter_guest(3, 1000).unwrap();
        let ap = decode_all(&g.bytes[..SMP_BSP_OFFSET as usize], 16, g.load_addr).unwrap();
        assert!(
            ap.iter().any(|i| i.has_lock_prefix()),
            "locked add in the AP code"
        );
        let bsp = decode_all(&g.bytes[g.code.clone()], 32, g.entry).unwrap();
        assert!(bsp.iter().all(|i| !i.is_invalid()));
        assert_eq!(g.entry, SMP_LOAD_ADDR + SMP_BSP_OFFSET);
    }

    #[test]
    fn real_mode_pit_guest_decodes() {
        let g = pit_pic_real_mode_guest().unwrap();
        let ins = decode_all(&g.bytes[g.code.clone()], 16, g.load_addr).unwrap();
        assert!(ins.iter().all(|i| !i.is_invalid()));
        assert!(g.bytes.len() < 0x7c00, "fits below the stack");
    }

    #[test]
    fn pit_guest_decodes() {
        let g = pit_pic_guest().unwrap();
        let ins = decode_all(&g.bytes[g.code.clone()], 32, g.load_addr).unwrap();
        assert!(
            ins.iter().all(|i| !i.is_invalid()),
            "invalid instruction in the PIT guest"
        );
        for m in [
            iced_x86::Mnemonic::Sti,
            iced_x86::Mnemonic::Hlt,
            iced_x86::Mnemonic::Lidt,
        ] {
            assert!(ins.iter().any(|i| i.mnemonic() == m), "{m:?} missing");
        }
    }
}
