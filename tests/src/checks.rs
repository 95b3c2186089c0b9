//! Byte-level checks of every guest: decodable with the right bitness,
//! the architectural constants right, the exits where they should be.

use crate::decode::{decode_all, last_imm_before, port_reads, port_writes};
use crate::embedded_guest as eg;
use crate::guests::*;
use crate::kit::{Guest, Mode, GUEST_STACK_TOP, RAW_LOAD_ADDR};
use crate::multiboot::{self, Header};
use iced_x86::{Code, Instruction, Mnemonic, Register};

fn decode_guest(g: &Guest) -> Vec<Instruction> {
    assert!(g.code.end <= g.bytes.len());
    decode_all(
        &g.bytes[g.code.clone()],
        g.bitness(),
        g.addr_of(g.code.start),
    )
    .expect("guest code decodes")
}

fn has(ins: &[Instruction], code: Code) -> bool {
    ins.iter().any(|i| i.code() == code)
}

fn cstr_at(g: &Guest, addr: u64) -> String {
    let off = (addr - g.load_addr) as usize;
    let tail = &g.bytes[off..];
    let end = tail.iter().position(|&b| b == 0).expect("NUL-terminated");
    String::from_utf8_lossy(&tail[..end]).into_owned()
}

/// Every `mov esi, imm32` in the code points at a NUL-terminated string in the image.
fn strings_loaded(g: &Guest, ins: &[Instruction]) -> Vec<String> {
    ins.iter()
        .filter(|i| i.code() == Code::Mov_r32_imm32 && i.op0_register() == Register::ESI)
        .map(|i| cstr_at(g, u64::from(i.immediate32())))
        .collect()
}

#[test]
fn embedded_image_is_what_the_build_script_made() {
    let built = eg::build().expect("embedded guest assembles");
    assert_eq!(hyperplug::embedded::image(), built.bytes.as_slice());
    assert_eq!(hyperplug::embedded::LOAD_ADDR, eg::LOAD_ADDR);
    assert_eq!(
        hyperplug::embedded::ENTRY,
        eg::LOAD_ADDR + eg::REAL16_OFF as u64
    );
    assert_eq!(
        hyperplug::embedded::BACKEND_NAME_ADDR,
        eg::BACKEND_NAME_ADDR
    );
    assert_eq!(
        hyperplug::embedded::BACKEND_NAME_MAX as u64 + 1,
        eg::BACKEND_NAME_SLOT
    );
}

fn embedded_sections() -> (eg::Image, Vec<Vec<Instruction>>) {
    let img = eg::build().expect("embedded guest assembles");
    let decoded = img
        .sections
        .iter()
        .map(|s| {
            decode_all(
                &img.bytes[s.offset..s.offset + s.len],
                s.bitness,
                eg::LOAD_ADDR + s.offset as u64,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", s.name))
        })
        .collect();
    (img, decoded)
}

#[test]
fn embedded_sections_decode_and_chain_with_far_jumps() {
    let (img, dec) = embedded_sections();
    let names: Vec<_> = img.sections.iter().map(|s| (s.name, s.bitness)).collect();
    assert_eq!(names, vec![("real16", 16), ("prot32", 32), ("long64", 64)]);
    // Real -> protected: ptr16:16 to the 32-bit code selector; protected -> long: ptr16:32 to the 64-bit one.
    let far = |ins: &[Instruction]| -> (u16, u64) {
        let j = ins
            .iter()
            .find(|i| matches!(i.code(), Code::Jmp_ptr1616 | Code::Jmp_ptr1632))
            .expect("far jmp");
        let off = if j.code() == Code::Jmp_ptr1616 {
            u64::from(j.far_branch16())
        } else {
            u64::from(j.far_branch32())
        };
        (j.far_branch_selector(), off)
    };
    assert_eq!(
        far(&dec[0]),
        (eg::SEL_CODE32, eg::LOAD_ADDR + eg::PROT32_OFF as u64)
    );
    assert_eq!(
        far(&dec[1]),
        (eg::SEL_CODE64, eg::LOAD_ADDR + eg::LONG64_OFF as u64)
    );
    // The far jump must directly follow the MOV to CR0 (SDM vol. 3, 9.9.1 step 4).
    for (i, ins) in dec[..2].iter().enumerate() {
        let j = ins
            .iter()
            .position(|x| x.code() == Code::Jmp_ptr1616 || x.code() == Code::Jmp_ptr1632)
            .expect("far jmp");
        assert_eq!(ins[j - 1].code(), Code::Mov_cr_r32, "section {i}");
        assert_eq!(ins[j - 1].op0_register(), Register::CR0, "section {i}");
    }
}

#[test]
fn embedded_gdt_descriptors_table() {
    // (selector, code?, D/B, L) — SDM vol. 3, Figure 3-8 and 5.2.1.
    let cases = [
        (eg::SEL_CODE32, true, true, false),
        (eg::SEL_DATA, false, true, false),
        (eg::SEL_CODE64, true, false, true),
    ];
    let img = eg::build().expect("assembles");
    for (sel, code, db, l) in cases {
        let off = eg::GDT_OFF + usize::from(sel);
        let d = u64::from_le_bytes(img.bytes[off..off + 8].try_into().expect("8 bytes"));
        let access = (d >> 40) as u8;
        assert_eq!(access & 0x80, 0x80, "sel {sel:#x}: present");
        assert_eq!(access & 0x60, 0, "sel {sel:#x}: DPL 0");
        assert_eq!(access & 0x10, 0x10, "sel {sel:#x}: code/data (S=1)");
        assert_eq!(access & 0x08 != 0, code, "sel {sel:#x}: executable");
        assert_eq!(access & 0x02, 0x02, "sel {sel:#x}: readable/writable");
        assert_eq!((d >> 54) & 1 == 1, db, "sel {sel:#x}: D/B");
        assert_eq!((d >> 53) & 1 == 1, l, "sel {sel:#x}: L");
        assert_eq!((d >> 55) & 1, 1, "sel {sel:#x}: G");
        let limit = (d & 0xffff) | ((d >> 32) & 0xf_0000);
        let base = ((d >> 16) & 0xff_ffff) | ((d >> 32) & 0xff00_0000);
        assert_eq!((base, limit), (0, 0xf_ffff), "sel {sel:#x}: flat");
    }
    assert_eq!(
        img.bytes[eg::GDT_OFF..eg::GDT_OFF + 8],
        [0; 8],
        "null descriptor"
    );
}

#[test]
fn embedded_lgdt_points_at_gdtr_and_gdtr_at_gdt() {
    let (img, dec) = embedded_sections();
    let lgdt = dec[0]
        .iter()
        .find(|i| i.mnemonic() == Mnemonic::Lgdt)
        .expect("lgdt in real-mode code");
    assert_eq!(lgdt.memory_base(), Register::None);
    assert_eq!(
        lgdt.memory_displacement64(),
        eg::LOAD_ADDR + eg::GDTR_OFF as u64
    );
    let g = &img.bytes[eg::GDTR_OFF..eg::GDTR_OFF + 6];
    assert_eq!(u16::from_le_bytes([g[0], g[1]]), 4 * 8 - 1);
    assert_eq!(
        u64::from(u32::from_le_bytes([g[2], g[3], g[4], g[5]])),
        eg::LOAD_ADDR + eg::GDT_OFF as u64
    );
    assert_eq!(eg::GDT_OFF % 8, 0, "GDT 8-byte aligned");
}

#[test]
fn embedded_long_mode_setup_order() {
    // SDM vol. 3, 9.8.5: CR4.PAE, then CR3, then EFER.LME (wrmsr), then CR0.PG.
    let (_, dec) = embedded_sections();
    let p = &dec[1];
    let pos = |pred: &dyn Fn(&Instruction) -> bool| p.iter().position(pred).expect("step present");
    let cr4 = pos(&|i| i.code() == Code::Mov_cr_r32 && i.op0_register() == Register::CR4);
    let cr3 = pos(&|i| i.code() == Code::Mov_cr_r32 && i.op0_register() == Register::CR3);
    let wrmsr = pos(&|i| i.mnemonic() == Mnemonic::Wrmsr);
    let cr0 = pos(&|i| i.code() == Code::Mov_cr_r32 && i.op0_register() == Register::CR0);
    assert!(
        cr4 < cr3 && cr3 < wrmsr && wrmsr < cr0,
        "{cr4} {cr3} {wrmsr} {cr0}"
    );
    assert_eq!(
        last_imm_before(p, cr3, Register::EAX),
        Some(u64::from(eg::PML4_ADDR))
    );
    assert_eq!(last_imm_before(p, wrmsr, Register::ECX), Some(0xc000_0080));
    // The EFER write sets LME (bit 8); the CR0/CR4 writes set PG (bit 31) / PAE (bit 5).
    let or_imm = |at: usize| p[at - 1].immediate(1) as u32;
    assert_eq!(or_imm(wrmsr), 1 << 8);
    assert_eq!(or_imm(cr0), 1 << 31);
    assert_eq!(or_imm(cr4), 1 << 5);
    // Page-table entries: PML4E -> PDPT, PDPTE -> PD, PDE = 2 MiB page (P|RW|PS).
    let stores: Vec<(u64, u32)> = p
        .iter()
        .filter(|i| i.code() == Code::Mov_rm32_imm32 && i.memory_base() == Register::None)
        .map(|i| (i.memory_displacement64(), i.immediate32()))
        .collect();
    assert_eq!(
        stores,
        vec![
            (u64::from(eg::PML4_ADDR), eg::PDPT_ADDR | 3),
            (u64::from(eg::PDPT_ADDR), eg::PD_ADDR | 3)
        ]
    );
    assert!(p
        .iter()
        .any(|i| i.code() == Code::Mov_r32_imm32 && i.immediate32() == 0x83));
    assert!(p
        .iter()
        .any(|i| i.mnemonic() == Mnemonic::Add && i.immediate(1) == 0x20_0000));
    assert!(has(p, Code::Loop_rel8_32_ECX));
    // Tables sit above the image and below 1 MiB.
    assert!(
        eg::LOAD_ADDR + eg::build().expect("build").bytes.len() as u64 <= u64::from(eg::PML4_ADDR)
    );
}

#[test]
fn embedded_prints_in_order_then_powers_off() {
    let (img, dec) = embedded_sections();
    let mut printed = Vec::new();
    for ins in &dec {
        for i in ins {
            let is_si = matches!(i.code(), Code::Mov_r16_imm16 | Code::Mov_r32_imm32)
                && matches!(i.op0_register(), Register::SI | Register::ESI);
            if is_si {
                printed.push(i.immediate(1));
            }
        }
    }
    let mut want = img.string_addrs.clone();
    want.insert(4, eg::BACKEND_NAME_ADDR);
    assert_eq!(
        printed, want,
        "print order: real, prot, long, ' on backend ', name, newline"
    );
    let text: String = eg::messages().concat();
    assert_eq!(
        text,
        "Hyperplug embedded guest: real mode -> protected mode -> long mode on backend \n"
    );
    // Each section writes serial bytes; only the long-mode one powers off, with a 16-bit write of SLP_EN.
    for ins in &dec {
        assert!(port_writes(ins).contains(&(0x3f8, 1)));
        assert!(port_reads(ins).contains(&(0x3fd, 1)));
    }
    assert_eq!(
        port_writes(&dec[2])
            .iter()
            .filter(|w| **w == (0x604, 2))
            .count(),
        1
    );
    assert_eq!(
        last_imm_before(&dec[2], dec[2].len(), Register::AX),
        Some(0x2000)
    );
    assert!(has(&dec[2], Code::Hlt));
    // The name slot gets a NUL at its last byte before it is printed.
    assert!(dec[2].iter().any(|i| i.code() == Code::Mov_rm8_imm8
        && i.memory_base() == Register::None
        && i.memory_displacement64() == eg::BACKEND_NAME_ADDR + 63));
}

#[test]
fn all_guests_decode_and_start_correctly() {
    let cases: [(&str, Guest, Mode); 4] = [
        (
            "uart_echo",
            uart_echo_guest().expect("build"),
            Mode::Protected,
        ),
        (
            "triple_fault",
            triple_fault_guest().expect("build"),
            Mode::Protected,
        ),
        (
            "multiboot_info",
            multiboot_info_guest().expect("build"),
            Mode::Protected,
        ),
        (
            "long_mode_hello",
            long_mode_hello_guest().expect("build"),
            Mode::Long,
        ),
    ];
    for (name, g, mode) in cases {
        assert_eq!(g.mode, mode, "{name}");
        let ins = decode_guest(&g);
        assert_eq!(
            ins.first().map(Instruction::ip),
            Some(g.entry),
            "{name}: first instruction at entry"
        );
        assert_eq!(
            ins.last().map(Instruction::next_ip),
            Some(g.addr_of(g.code.end)),
            "{name}: code ends cleanly"
        );
        // Sets its own stack, well clear of the host's structures.
        let sp = ins
            .iter()
            .position(|i| i.op0_register() == Register::ESP)
            .expect("stack set");
        assert_eq!(ins[sp].immediate(1), u64::from(GUEST_STACK_TOP), "{name}");
        assert!(
            ins[..sp]
                .iter()
                .all(|i| !matches!(i.mnemonic(), Mnemonic::Call | Mnemonic::Push)),
            "{name}"
        );
    }
}

#[test]
fn uart_echo_guest_reads_echoes_and_powers_off() {
    let g = uart_echo_guest().expect("build");
    assert_eq!((g.load_addr, g.entry), (RAW_LOAD_ADDR, RAW_LOAD_ADDR));
    let ins = decode_guest(&g);
    assert_eq!(strings_loaded(&g, &ins), vec!["ready\n", "\nbye\n"]);
    assert!(ins
        .iter()
        .any(|i| i.code() == Code::Cmp_AL_imm8 && i.immediate8() == b'q'));
    // Polls LSR for data ready (bit 0) and for THR empty (bit 5).
    let tested: Vec<u8> = ins
        .iter()
        .filter(|i| i.code() == Code::Test_AL_imm8)
        .map(Instruction::immediate8)
        .collect();
    assert!(
        tested.contains(&0x01) && tested.contains(&0x20),
        "{tested:?}"
    );
    assert!(port_reads(&ins).contains(&(0x3f8, 1)), "reads RBR");
    assert!(port_writes(&ins).contains(&(0x604, 2)), "ACPI S5");
}

#[test]
fn triple_fault_guest_loads_an_empty_idt_then_faults() {
    let g = triple_fault_guest().expect("build");
    let ins = decode_guest(&g);
    let lidt = ins
        .iter()
        .position(|i| i.mnemonic() == Mnemonic::Lidt)
        .expect("lidt");
    let idtr = (ins[lidt].memory_displacement64() - g.load_addr) as usize;
    assert_eq!(g.bytes[idtr..idtr + 6], [0; 6], "IDTR limit 0, base 0");
    let div = ins
        .iter()
        .position(|i| i.mnemonic() == Mnemonic::Div)
        .expect("div");
    assert!(lidt < div);
    assert_eq!(
        ins[div - 1].mnemonic(),
        Mnemonic::Xor,
        "divisor zeroed right before"
    );
    assert_eq!(ins[div - 1].op0_register(), ins[div].op0_register());
    assert!(
        ins[..lidt].iter().any(|i| i.mnemonic() == Mnemonic::Cli),
        "no external interrupt may arrive first"
    );
    assert_eq!(strings_loaded(&g, &ins), vec!["triple fault next\n"]);
}

#[test]
fn multiboot_guest_header_is_valid() {
    let g = multiboot_info_guest().expect("build");
    let (off, h) = Header::find(&g.bytes).expect("header");
    assert_eq!(off % multiboot::HEADER_ALIGN, 0);
    assert!(off + multiboot::HEADER_LEN <= multiboot::SEARCH_LIMIT);
    let sum =
        |i: usize| u32::from_le_bytes(g.bytes[off + 4 * i..off + 4 * i + 4].try_into().expect("4"));
    assert_eq!(
        sum(0).wrapping_add(sum(1)).wrapping_add(sum(2)),
        0,
        "magic + flags + checksum"
    );
    assert_eq!(h.flags & multiboot::FLAG_ADDRESS, multiboot::FLAG_ADDRESS);
    assert_eq!(
        h.flags & multiboot::FLAG_MEMORY_INFO,
        multiboot::FLAG_MEMORY_INFO
    );
    assert_eq!(
        h.flags & 0xfffc,
        0,
        "no required flag this guest cannot honour"
    );
    // The address fields put the file at 1 MiB and the entry at the code.
    assert_eq!(u64::from(h.load_addr), g.load_addr);
    assert_eq!(
        u64::from(h.header_addr) - u64::from(h.load_addr),
        off as u64
    );
    assert_eq!(
        u64::from(h.load_end_addr) - u64::from(h.load_addr),
        g.bytes.len() as u64
    );
    assert_eq!(h.bss_end_addr, 0);
    assert_eq!(u64::from(h.entry_addr), g.entry);
    assert_eq!(g.entry, g.addr_of(g.code.start));
}

#[test]
fn multiboot_guest_checks_magic_and_reads_info() {
    let g = multiboot_info_guest().expect("build");
    let ins = decode_guest(&g);
    assert!(
        ins.iter()
            .any(|i| i.code() == Code::Cmp_EAX_imm32
                && i.immediate32() == multiboot::BOOTLOADER_MAGIC)
    );
    // Info fields read through EBX at the spec's offsets.
    let mut offs: Vec<u64> = ins
        .iter()
        .filter(|i| i.memory_base() == Register::EBX)
        .map(Instruction::memory_displacement64)
        .collect();
    offs.sort_unstable();
    offs.dedup();
    assert_eq!(offs, vec![0, 4, 8, 16]);
    assert!(has(&ins, Code::Div_rm32), "decimal conversion divides");
    let strings = strings_loaded(&g, &ins);
    for s in [
        "magic ok\n",
        "bad magic\n",
        "mem_lower=",
        "K mem_upper=",
        "K\n",
        "cmdline=",
        "\n",
    ] {
        assert!(
            strings.iter().any(|x| x == s),
            "missing {s:?} in {strings:?}"
        );
    }
    assert!(port_writes(&ins).contains(&(0x604, 2)));
}

#[test]
fn long_mode_guest_exits_with_0x10() {
    let g = long_mode_hello_guest().expect("build");
    let ins = decode_guest(&g);
    assert_eq!(strings_loaded(&g, &ins), vec!["long mode ok\n"]);
    let out = ins
        .iter()
        .position(|i| i.code() == Code::Out_DX_EAX)
        .expect("32-bit out");
    assert_eq!(last_imm_before(&ins, out, Register::DX), Some(0xf4));
    assert_eq!(
        last_imm_before(&ins, out, Register::EAX),
        Some(u64::from(LONG_MODE_EXIT_VALUE))
    );
    assert_eq!((LONG_MODE_EXIT_VALUE << 1) | 1, 33);
}
