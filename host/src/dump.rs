//! Register dumps for stopped guests (triple fault, internal errors).

use hyperplug_plugin_api::state::{DTable, Regs, Segment, Sregs};
use std::fmt::Write;

fn seg(name: &str, s: &Segment) -> String {
    format!(
        "{name:<3}={:04x} base={:016x} limit={:08x} type={:x} s={} dpl={} p={} db={} l={} g={}{}",
        s.selector,
        s.base,
        s.limit,
        s.type_,
        s.s,
        s.dpl,
        s.present,
        s.db,
        s.l,
        s.g,
        if s.unusable != 0 { " unusable" } else { "" }
    )
}

fn dt(name: &str, d: &DTable) -> String {
    format!("{name}={:016x} limit={:04x}", d.base, d.limit)
}

/// Formats general and special registers, one group per line.
pub fn format_registers(r: &Regs, s: &Sregs) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "RAX={:016x} RBX={:016x} RCX={:016x} RDX={:016x}",
        r.rax, r.rbx, r.rcx, r.rdx
    );
    let _ = writeln!(
        o,
        "RSI={:016x} RDI={:016x} RBP={:016x} RSP={:016x}",
        r.rsi, r.rdi, r.rbp, r.rsp
    );
    let _ = writeln!(
        o,
        "R8 ={:016x} R9 ={:016x} R10={:016x} R11={:016x}",
        r.r8, r.r9, r.r10, r.r11
    );
    let _ = writeln!(
        o,
        "R12={:016x} R13={:016x} R14={:016x} R15={:016x}",
        r.r12, r.r13, r.r14, r.r15
    );
    let _ = writeln!(o, "RIP={:016x} RFLAGS={:016x}", r.rip, r.rflags);
    for (n, sg) in [
        ("CS", &s.cs),
        ("SS", &s.ss),
        ("DS", &s.ds),
        ("ES", &s.es),
        ("FS", &s.fs),
        ("GS", &s.gs),
        ("TR", &s.tr),
        ("LDT", &s.ldt),
    ] {
        let _ = writeln!(o, "{}", seg(n, sg));
    }
    let _ = writeln!(o, "{} {}", dt("GDT", &s.gdt), dt("IDT", &s.idt));
    let _ = writeln!(
        o,
        "CR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x} CR8={:x} EFER={:x} APIC_BASE={:x}",
        s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.apic_base
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_contains_every_register() {
        let r = Regs {
            rax: 0xdead,
            rip: 0xfff0,
            r15: 0x15,
            ..Default::default()
        };
        let s = Sregs {
            cr0: 0x11,
            efer: 0x500,
            ..Default::default()
        };
        let d = format_registers(&r, &s);
        for needle in [
            "RAX=000000000000dead",
            "RIP=000000000000fff0",
            "R15=0000000000000015",
            "CR0=00000011",
            "EFER=500",
            "CS =0000",
            "IDT=",
        ] {
            assert!(d.contains(needle), "missing {needle} in\n{d}");
        }
    }
}
