//! Tiny guests run through the plain-Rust `Vm`/`Vcpu` API on /dev/kvm.
//! Hand-assembled; each instruction's bytes are annotated.

mod common;

use common::*;
use hyperplug_plugin_api::backend::{MemorySlot, Vcpu, Vm};
use hyperplug_plugin_api::state::{cr, MsrEntry};
use hyperplug_plugin_api::ExitReason;

const MEM: usize = 0x10000;

fn io_out(port: u16, size: u8, count: u32, data: &[u8]) -> ExitReason {
    ExitReason::IoOut {
        port,
        size,
        count,
        data: data.to_vec().into(),
    }
}

#[test]
fn real_mode_out_in_hlt() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(MEM);
    mem.write(
        0x1000,
        &[
            0xba, 0xf8, 0x03, // mov dx, 0x3f8
            0xb0, 0x41, // mov al, 0x41
            0xee, // out dx, al
            0xec, // in al, dx
            0xf4, // hlt
        ],
    );
    let (_vm, mut vcpu) = vm_with_memory(&mem);
    enter_real_mode(&mut vcpu, 0x1000);

    let e = run(&mut vcpu);
    assert_eq!(e.reason, io_out(0x3f8, 1, 1, &[0x41]));
    assert_eq!(e.native_name.as_str(), "KVM_EXIT_IO");
    assert_eq!(
        e.native_detail.as_str(),
        "port=0x3f8 size=1 count=1 dir=out"
    );

    let e = run(&mut vcpu);
    assert_eq!(
        e.reason,
        ExitReason::IoIn {
            port: 0x3f8,
            size: 1,
            count: 1
        }
    );
    assert!(
        vcpu.complete_io(&[1, 2]).is_err(),
        "wrong length must be refused"
    );
    assert!(
        vcpu.run().is_err(),
        "run before complete_io must be refused"
    );
    vcpu.complete_io(&[0x5a]).expect("complete_io");
    assert!(vcpu.complete_io(&[0x5a]).is_err(), "double completion");

    let e = run(&mut vcpu);
    assert_eq!(e.reason, ExitReason::Hlt);
    assert_eq!(e.native_name.as_str(), "KVM_EXIT_HLT");
    let regs = vcpu.get_regs().expect("get_regs");
    assert_eq!(regs.rax & 0xff, 0x5a, "IN result lands in AL");
    assert_eq!(regs.rip, 0x1008, "RIP after HLT");
}

#[test]
fn real_mode_string_io() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(MEM);
    mem.write(0x1100, b"xyz");
    mem.write(
        0x1000,
        &[
            0xfc, // cld
            0xbe, 0x00, 0x11, // mov si, 0x1100
            0xb9, 0x03, 0x00, // mov cx, 3
            0xba, 0xf8, 0x03, // mov dx, 0x3f8
            0xf3, 0x6e, // rep outsb
            0xbf, 0x00, 0x12, // mov di, 0x1200
            0xb9, 0x03, 0x00, // mov cx, 3
            0xf3, 0x6c, // rep insb
            0xf4, // hlt
        ],
    );
    let (_vm, mut vcpu) = vm_with_memory(&mem);
    enter_real_mode(&mut vcpu, 0x1000);

    let mut out = Vec::new();
    let mut input = b"ABC".iter().copied();
    loop {
        let e = run(&mut vcpu);
        match e.reason {
            ExitReason::IoOut {
                port: 0x3f8,
                size: 1,
                count,
                data,
            } => {
                assert_eq!(data.len(), count as usize);
                out.extend_from_slice(&data);
            }
            ExitReason::IoIn {
                port: 0x3f8,
                size: 1,
                count,
            } => {
                let chunk: Vec<u8> = input.by_ref().take(count as usize).collect();
                assert_eq!(chunk.len(), count as usize, "guest read more than 3 bytes");
                vcpu.complete_io(&chunk).expect("complete_io");
            }
            ExitReason::Hlt => break,
            other => panic!("unexpected exit {other:?}"),
        }
    }
    assert_eq!(out, b"xyz");
    assert_eq!(mem.read(0x1200, 3), b"ABC");
}

/// Real mode, IDTR.limit = 0, `int3`: the vector lies beyond the IDT limit, so
/// #GP, then #DF, then shutdown (SDM vol. 3, 20.1.4 and 6.15). Hardware
/// (VMX/SVM) KVM does that. Paravirtual KVM emulates real mode in the host
/// kernel, whose real-mode interrupt delivery does not check the IDT limit:
/// the guest vectors through IVT entry 3 anyway. The test pins both behaviours.
#[test]
fn real_mode_idt_limit_zero() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(MEM);
    mem.write(3 * 4, &[0x00, 0x11, 0x00, 0x00]); // IVT[3] -> 0000:1100
    mem.write(
        0x1100,
        &[
            0xb0, 0x33, // mov al, 0x33
            0xe6, 0x80, // out 0x80, al
            0xf4, // hlt
        ],
    );
    mem.write(0x1000, &[0xcc, 0xf4]); // int3; hlt
    let (_vm, mut vcpu) = vm_with_memory(&mem);
    enter_real_mode(&mut vcpu, 0x1000);
    let mut s = vcpu.get_sregs().expect("get_sregs");
    s.idt.base = 0;
    s.idt.limit = 0;
    vcpu.set_sregs(&s).expect("set_sregs");
    let e = run(&mut vcpu);
    if hyperplug_backend_kvm::detect::host_virt().any() {
        assert_eq!(e.reason, ExitReason::Shutdown, "{}", e.native_name);
        assert_eq!(e.native_name.as_str(), "KVM_EXIT_SHUTDOWN");
    } else {
        assert_eq!(
            e.reason,
            io_out(0x80, 1, 1, &[0x33]),
            "paravirtual KVM: real-mode int3 ignores IDTR.limit"
        );
        eprintln!(
            "observed: paravirtual KVM delivers real-mode int3 through IVT[3] despite IDTR.limit=0"
        );
    }
}

/// A real-mode guest that enters protected mode itself (LGDT, CR0.PE, far JMP)
/// and then faults with an empty IDT: #UD, #DF, shutdown (SDM vol. 3, 6.15).
#[test]
fn real_mode_guest_switching_to_protected_mode_triple_faults() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(MEM);
    write_gdt(&mem, false);
    // GDTR image at 0x600: limit 23, base 0x500.
    mem.write(0x600, &[0x17, 0x00, 0x00, 0x05, 0x00, 0x00]);
    // IDTR image at 0x610: limit 0, base 0.
    mem.write(0x610, &[0; 6]);
    mem.write(
        0x1000,
        &[
            0xfa, // cli
            0x0f, 0x01, 0x16, 0x00, 0x06, // lgdt [0x600]
            0x0f, 0x01, 0x1e, 0x10, 0x06, // lidt [0x610]
            0x0f, 0x20, 0xc0, // mov eax, cr0
            0x0c, 0x01, // or al, 1
            0x0f, 0x22, 0xc0, // mov cr0, eax
            0xea, 0x18, 0x10, 0x08, 0x00, // jmp 0x08:0x1018
            // 0x1018, 32-bit code:
            0xb0, 0x32, // mov al, 0x32
            0xe6, 0x80, // out 0x80, al
            0x0f, 0x0b, // ud2
        ],
    );
    let (_vm, mut vcpu) = vm_with_memory(&mem);
    enter_real_mode(&mut vcpu, 0x1000);
    let e = run(&mut vcpu);
    assert_eq!(e.reason, io_out(0x80, 1, 1, &[0x32]), "reached 32-bit code");
    let s = vcpu.get_sregs().expect("sregs");
    assert_eq!((s.cs.selector, s.cs.db, s.cr0 & 1), (0x08, 1, 1));
    let e = run(&mut vcpu);
    assert_eq!(e.reason, ExitReason::Shutdown, "{}", e.native_name);
}

#[test]
fn unbacked_memory_is_mmio() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(MEM);
    mem.write(
        0x1000,
        &[
            0xb8, 0x00, 0x20, // mov ax, 0x2000
            0x8e, 0xd8, // mov ds, ax        (DS base 0x20000, beyond the slot)
            0xa0, 0x10, 0x00, // mov al, [0x10]
            0xa2, 0x20, 0x00, // mov [0x20], al
            0xf4, // hlt
        ],
    );
    let (_vm, mut vcpu) = vm_with_memory(&mem);
    enter_real_mode(&mut vcpu, 0x1000);
    let e = run(&mut vcpu);
    assert_eq!(
        e.reason,
        ExitReason::MmioRead {
            addr: 0x20010,
            size: 1
        }
    );
    assert_eq!(e.native_name.as_str(), "KVM_EXIT_MMIO");
    vcpu.complete_io(&[0x77]).expect("complete_io");
    let e = run(&mut vcpu);
    assert_eq!(
        e.reason,
        ExitReason::MmioWrite {
            addr: 0x20020,
            data: vec![0x77].into()
        }
    );
    assert_eq!(run(&mut vcpu).reason, ExitReason::Hlt);
}

#[test]
fn readonly_slot_writes_become_mmio() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(MEM);
    let rom = GuestMem::new(0x1000);
    rom.write(0, &[0x11]);
    mem.write(
        0x1000,
        &[
            0xb8, 0x00, 0x10, // mov ax, 0x1000
            0x8e, 0xd8, // mov ds, ax        (DS base 0x10000 = the ROM slot)
            0xa0, 0x00, 0x00, // mov al, [0]
            0x04, 0x01, // add al, 1
            0xa2, 0x00, 0x00, // mov [0], al
            0xf4, // hlt
        ],
    );
    let (vm, mut vcpu) = vm_with_memory(&mem);
    let slot = MemorySlot {
        id: 1,
        flags: MemorySlot::READONLY,
        guest_phys_addr: 0x10000,
        size: 0x1000,
        host_addr: rom.addr(),
    };
    if !vm.caps().readonly_mem {
        let err = vm
            .add_memory_slot(slot)
            .expect_err("readonly without the cap");
        assert!(err.message.contains("KVM_CAP_READONLY_MEM"), "{err}");
        eprintln!("KVM_CAP_READONLY_MEM absent: read-only slot refused as expected");
        return;
    }
    vm.add_memory_slot(slot).expect("readonly slot");
    enter_real_mode(&mut vcpu, 0x1000);
    let e = run(&mut vcpu);
    assert_eq!(
        e.reason,
        ExitReason::MmioWrite {
            addr: 0x10000,
            data: vec![0x12].into()
        },
        "read came from the ROM, write trapped"
    );
    assert_eq!(run(&mut vcpu).reason, ExitReason::Hlt);
    assert_eq!(rom.read(0, 1), [0x11], "ROM unchanged");
}

#[test]
fn interrupt_window_and_injection() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(MEM);
    // Real-mode IVT entry 0x20 (SDM vol. 3, 20.1.4): offset 0x1100, segment 0.
    mem.write(0x20 * 4, &[0x00, 0x11, 0x00, 0x00]);
    mem.write(
        0x1000,
        &[
            0xfb, // sti
            0x90, // nop
            0xeb, 0xfe, // jmp $
        ],
    );
    mem.write(
        0x1100,
        &[
            0xb0, 0x99, // mov al, 0x99
            0xe6, 0x80, // out 0x80, al
            0xf4, // hlt
        ],
    );
    let (_vm, mut vcpu) = vm_with_memory(&mem);
    enter_real_mode(&mut vcpu, 0x1000);
    assert!(
        !vcpu.interrupt_window_open().expect("window"),
        "IF=0 at start"
    );
    vcpu.request_interrupt_window(true).expect("request");
    let e = run(&mut vcpu);
    assert_eq!(e.reason, ExitReason::InterruptWindow);
    assert_eq!(e.native_name.as_str(), "KVM_EXIT_IRQ_WINDOW_OPEN");
    assert!(vcpu.interrupt_window_open().expect("window"));
    vcpu.request_interrupt_window(false).expect("request");
    vcpu.inject_interrupt(0x20).expect("inject");
    let e = run(&mut vcpu);
    assert_eq!(e.reason, io_out(0x80, 1, 1, &[0x99]));
    // The handler runs with IF clear; the pushed FLAGS (at SS:SP-2) had IF set.
    let regs = vcpu.get_regs().expect("regs");
    assert_eq!(
        regs.rflags & (1 << 9),
        0,
        "IF cleared by interrupt delivery"
    );
    assert_eq!(regs.rsp, 0x7000 - 6, "FLAGS, CS, IP pushed");
}

/// GDT at 0x500: null, flat code (32- or 64-bit), flat data (SDM vol. 3, 3.4.5).
fn write_gdt(mem: &GuestMem, long: bool) {
    let code: u64 = if long {
        0x00af_9a00_0000_ffff
    } else {
        0x00cf_9a00_0000_ffff
    };
    let data: u64 = 0x00cf_9200_0000_ffff;
    let mut gdt = vec![0u8; 8];
    gdt.extend_from_slice(&code.to_le_bytes());
    gdt.extend_from_slice(&data.to_le_bytes());
    mem.write(0x500, &gdt);
}

#[test]
fn protected_mode_32bit_cpl0() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(MEM);
    write_gdt(&mem, false);
    mem.write(
        0x1000,
        &[
            0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
            0xb8, 0x78, 0x56, 0x34, 0x12, // mov eax, 0x12345678
            0xef, // out dx, eax
            0xa3, 0x00, 0x20, 0x00, 0x00, // mov [0x2000], eax
            0xf4, // hlt
        ],
    );
    let (_vm, mut vcpu) = vm_with_memory(&mem);
    let mut s = vcpu.get_sregs().expect("sregs");
    flat_sregs(&mut s, 0x500, false);
    s.cr0 = cr::CR0_PE | cr::CR0_ET | cr::CR0_NE;
    vcpu.set_sregs(&s).expect("set_sregs");
    vcpu.set_regs(&hyperplug_plugin_api::state::Regs {
        rip: 0x1000,
        rflags: 2,
        rsp: 0x7000,
        ..Default::default()
    })
    .expect("set_regs");
    let e = run(&mut vcpu);
    assert_eq!(e.reason, io_out(0x3f8, 4, 1, &[0x78, 0x56, 0x34, 0x12]));
    assert_eq!(run(&mut vcpu).reason, ExitReason::Hlt);
    assert_eq!(mem.read(0x2000, 4), [0x78, 0x56, 0x34, 0x12]);
    let s = vcpu.get_sregs().expect("sregs");
    assert_eq!(s.cs.db, 1, "still 32-bit code");
}

#[test]
fn protected_mode_triple_fault_is_shutdown() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(MEM);
    write_gdt(&mem, false);
    mem.write(0x1000, &[0x0f, 0x0b]); // ud2 with an empty IDT
    let (_vm, mut vcpu) = vm_with_memory(&mem);
    let mut s = vcpu.get_sregs().expect("sregs");
    flat_sregs(&mut s, 0x500, false);
    s.cr0 = cr::CR0_PE | cr::CR0_ET | cr::CR0_NE;
    s.idt.base = 0;
    s.idt.limit = 0;
    vcpu.set_sregs(&s).expect("set_sregs");
    vcpu.set_regs(&hyperplug_plugin_api::state::Regs {
        rip: 0x1000,
        rflags: 2,
        ..Default::default()
    })
    .expect("set_regs");
    assert_eq!(run(&mut vcpu).reason, ExitReason::Shutdown);
}

/// Identity-maps the first 2 MiB with one large page: PML4 0x3000, PDPT 0x4000,
/// PD 0x5000 (SDM vol. 3, 4.5, Tables 4-15, 4-17, 4-18: P=bit 0, R/W=bit 1, PS=bit 7).
fn write_long_mode_tables(mem: &GuestMem) {
    mem.write(0x3000, &(0x4000u64 | 0x3).to_le_bytes());
    mem.write(0x4000, &(0x5000u64 | 0x3).to_le_bytes());
    mem.write(0x5000, &(0x83u64).to_le_bytes());
}

fn enter_long_mode(vcpu: &mut hyperplug_backend_kvm::KvmVcpu, mem: &GuestMem) {
    write_gdt(mem, true);
    write_long_mode_tables(mem);
    let mut s = vcpu.get_sregs().expect("sregs");
    flat_sregs(&mut s, 0x500, true);
    s.cr3 = 0x3000;
    s.cr4 = cr::CR4_PAE;
    s.cr0 = cr::CR0_PE | cr::CR0_ET | cr::CR0_NE | cr::CR0_PG;
    s.efer = cr::EFER_LME | cr::EFER_LMA;
    vcpu.set_sregs(&s).expect("set_sregs (long mode)");
}

#[test]
fn long_mode_cpl0() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(MEM);
    mem.write(
        0x1000,
        &[
            0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
            0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // mov rax, imm64
            0xef, // out dx, eax
            0x48, 0xa3, 0x00, 0x20, 0, 0, 0, 0, 0, 0,    // mov [0x2000], rax
            0xf4, // hlt
        ],
    );
    let (_vm, mut vcpu) = vm_with_memory(&mem);
    enter_long_mode(&mut vcpu, &mem);
    vcpu.set_regs(&hyperplug_plugin_api::state::Regs {
        rip: 0x1000,
        rflags: 2,
        rsp: 0x7000,
        ..Default::default()
    })
    .expect("set_regs");
    let e = run(&mut vcpu);
    assert_eq!(e.reason, io_out(0x3f8, 4, 1, &[0x88, 0x77, 0x66, 0x55]));
    assert_eq!(run(&mut vcpu).reason, ExitReason::Hlt);
    assert_eq!(mem.read(0x2000, 8), 0x1122_3344_5566_7788u64.to_le_bytes());
    let s = vcpu.get_sregs().expect("sregs");
    assert_eq!(s.efer & cr::EFER_LMA, cr::EFER_LMA, "long mode active");
    assert_eq!(s.cs.l, 1);
}

#[test]
fn state_round_trips_through_kvm() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(MEM);
    let (_vm, mut vcpu) = vm_with_memory(&mem);

    let mut regs = vcpu.get_regs().expect("regs");
    regs.rbx = 0x1234_5678_9abc_def0;
    regs.r15 = 0xfeed;
    vcpu.set_regs(&regs).expect("set_regs");
    assert_eq!(vcpu.get_regs().expect("regs"), regs);

    let mut fpu = vcpu.get_fpu().expect("fpu");
    fpu.xmm[3] = [7; 16];
    fpu.mxcsr = 0x1f80;
    vcpu.set_fpu(&fpu).expect("set_fpu");
    assert_eq!(vcpu.get_fpu().expect("fpu").xmm[3], [7; 16]);

    // IA32_SYSENTER_CS (0x174), IA32_SYSENTER_ESP (0x175): SDM vol. 4, Table 2-2.
    let set = [
        MsrEntry {
            index: 0x174,
            reserved: 0,
            data: 0x10,
        },
        MsrEntry {
            index: 0x175,
            reserved: 0,
            data: 0x8000,
        },
    ];
    vcpu.set_msrs(&set).expect("set_msrs");
    let got = vcpu
        .get_msrs(&[0x174, 0xdead_beef, 0x175])
        .expect("get_msrs");
    assert_eq!(got, set.to_vec(), "unknown MSR left out, others read back");
    let err = vcpu
        .set_msrs(&[
            set[0],
            MsrEntry {
                index: 0xdead_beef,
                reserved: 0,
                data: 1,
            },
        ])
        .expect_err("unknown MSR write");
    assert!(err.message.contains("0xdeadbeef"), "{err}");

    let ev = vcpu.get_events().expect("events");
    vcpu.set_events(&ev).expect("set_events");
    assert_eq!(vcpu.get_events().expect("events").nmi, ev.nmi);

    match vcpu.get_xsave() {
        Ok(x) => {
            assert!(x.region.len() >= 4096, "{}", x.region.len());
            vcpu.set_xsave(&x).expect("set_xsave");
            assert_eq!(vcpu.get_xsave().expect("xsave").region, x.region);
            let mut short = x.clone();
            short.region.truncate(100);
            assert!(vcpu.set_xsave(&short).is_err());
        }
        Err(e) => {
            assert_eq!(e.kind, hyperplug_plugin_api::ErrorKind::Unsupported, "{e}");
            eprintln!("xsave unsupported here: {e}");
        }
    }
}

/// 64-bit CPL3 code (IOPL=3 so OUT is allowed, SDM vol. 1, 19.5.1): runs
/// natively even on paravirtual KVM. HLT at CPL3 raises #GP (SDM vol. 2A, HLT);
/// with no IDT that becomes a triple fault.
#[test]
fn long_mode_cpl3() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(MEM);
    // GDT: null, code64 DPL0, data DPL0, code64 DPL3 (0x18), data DPL3 (0x20).
    let mut gdt = vec![0u8; 8];
    for d in [
        0x00af_9a00_0000_ffffu64,
        0x00cf_9200_0000_ffff,
        0x00af_fa00_0000_ffff,
        0x00cf_f200_0000_ffff,
    ] {
        gdt.extend_from_slice(&d.to_le_bytes());
    }
    mem.write(0x500, &gdt);
    // Page tables with U/S=1 (bit 2) at every level.
    mem.write(0x3000, &(0x4000u64 | 0x7).to_le_bytes());
    mem.write(0x4000, &(0x5000u64 | 0x7).to_le_bytes());
    mem.write(0x5000, &(0x87u64).to_le_bytes());
    mem.write(
        0x1000,
        &[
            0xb0, 0x42, // mov al, 0x42
            0xe6, 0x80, // out 0x80, al
            0xb9, 0x00, 0x00, 0x10, 0x00, // mov ecx, 0x100000
            0xff, 0xc9, // dec ecx
            0x75, 0xfc, // jnz dec
            0xb0, 0x43, // mov al, 0x43
            0xe6, 0x80, // out 0x80, al
            0xf4, // hlt (#GP at CPL3)
        ],
    );
    let (_vm, mut vcpu) = vm_with_memory(&mem);
    let mut s = vcpu.get_sregs().expect("sregs");
    flat_sregs(&mut s, 0x500, true);
    s.gdt.limit = 5 * 8 - 1;
    s.cs.selector = 0x1b;
    s.cs.dpl = 3;
    for seg in [&mut s.ds, &mut s.es, &mut s.fs, &mut s.gs, &mut s.ss] {
        seg.selector = 0x23;
        seg.dpl = 3;
    }
    s.cr3 = 0x3000;
    s.cr4 = cr::CR4_PAE;
    s.cr0 = cr::CR0_PE | cr::CR0_ET | cr::CR0_NE | cr::CR0_PG;
    s.efer = cr::EFER_LME | cr::EFER_LMA;
    vcpu.set_sregs(&s).expect("set_sregs");
    vcpu.set_regs(&hyperplug_plugin_api::state::Regs {
        rip: 0x1000,
        rflags: 0x3002, // IOPL=3
        rsp: 0x7000,
        ..Default::default()
    })
    .expect("set_regs");
    assert_eq!(run(&mut vcpu).reason, io_out(0x80, 1, 1, &[0x42]));
    let t = std::time::Instant::now();
    assert_eq!(run(&mut vcpu).reason, io_out(0x80, 1, 1, &[0x43]));
    eprintln!("CPL3: 1M-iteration loop took {:?}", t.elapsed());
    assert_eq!(vcpu.get_regs().expect("regs").rcx, 0);
    assert_eq!(run(&mut vcpu).reason, ExitReason::Shutdown);
}

#[test]
fn kick_interrupts_a_spinning_guest() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(MEM);
    // An endless loop: jmp $ (real mode, emulated by a paravirtual KVM, native elsewhere).
    mem.write(0x1000, &[0xeb, 0xfe]);
    let (_vm, mut vcpu) = vm_with_memory(&mem);
    enter_real_mode(&mut vcpu, 0x1000);
    let kicker = vcpu.kicker().expect("kicker");

    // A kick before the run makes it return at once.
    kicker.kick();
    assert_eq!(vcpu.run().expect("run").reason, ExitReason::Interrupted);

    // A kick from another thread while the guest spins.
    let k2 = vcpu.kicker().expect("kicker");
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        k2.kick();
    });
    assert_eq!(vcpu.run().expect("run").reason, ExitReason::Interrupted);
    t.join().expect("kicker thread");
    assert_eq!(
        vcpu.get_regs().expect("regs").rip,
        0x1000,
        "still in the loop"
    );

    // Kicks after the vCPU is gone are harmless.
    drop(vcpu);
    kicker.kick();
}

#[test]
fn nmi_is_delivered_even_with_interrupts_disabled() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(MEM);
    // Real-mode IVT entry 2 (NMI): offset 0x1200, segment 0.
    mem.write(2 * 4, &[0x00, 0x12, 0x00, 0x00]);
    mem.write(
        0x1000,
        &[
            0xfa, // cli
            0xeb, 0xfe, // jmp $
        ],
    );
    mem.write(
        0x1200,
        &[
            0xb0, 0x02, // mov al, 2
            0xe6, 0x80, // out 0x80, al
            0xf4, // hlt
        ],
    );
    let (_vm, mut vcpu) = vm_with_memory(&mem);
    enter_real_mode(&mut vcpu, 0x1000);
    vcpu.inject_nmi().expect("inject NMI");
    let e = run(&mut vcpu);
    assert_eq!(
        e.reason,
        io_out(0x80, 1, 1, &[0x02]),
        "the NMI handler ran despite IF = 0"
    );
}
