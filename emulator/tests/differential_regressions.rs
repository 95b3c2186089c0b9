//! Regression tests for emulator bugs found by the differential test against the
//! host CPU (`tests/tests/emulator_differential.rs`, `emulator-diff`). Each test is
//! the minimised case, with the values the CPU produced.

mod common;

use common::*;
use hyperplug_emulator::EventKind;
use iced_x86::code_asm::*;

/// XCHG with a memory operand whose address uses the register operand: the
/// address is formed before either operand is written (SDM vol. 2, XCHG:
/// TEMP := DEST; DEST := SRC; SRC := TEMP, with DEST's address fixed).
/// Found as seed 1 case 6294: `lock xchg [r15+r12*8-0xf96], r12`.
#[test]
fn xchg_memory_address_uses_exchanged_register() {
    // (index register value before, scale) -> memory gets the old index, the
    // register gets the old memory value.
    for (idx, scale) in [(0u64, 8u32), (3, 8), (1, 1), (2, 4)] {
        let mut m = Machine::new(M::Long64);
        let base = DATA + 0x100;
        let slot = base + idx * u64::from(scale);
        assert!(m.bus.load(slot, &0x1122_3344_5566_7788u64.to_le_bytes()));
        m.load(|a| {
            a.mov(r15, base).unwrap();
            a.mov(r12, idx).unwrap();
            a.xchg(qword_ptr(r15 + r12 * scale), r12).unwrap();
            a.hlt().unwrap();
        });
        m.cpu.rip = CODE;
        m.run_to_hlt();
        assert_eq!(m.gpr(12), 0x1122_3344_5566_7788, "idx {idx} scale {scale}");
        assert_eq!(m.bus.peek_u64(slot), idx, "idx {idx} scale {scale}");
    }
}

/// LAHF/SAHF in 64-bit mode follow CPUID.80000001H:ECX.LAHF-SAHF[bit 0] of the
/// CPU model (SDM vol. 2, LAHF/SAHF "64-Bit Mode Exceptions": #UD if it is 0).
/// Found as seed 1 case 51: `lahf` raised #UD where the host CPU executes it.
#[test]
fn lahf_sahf_in_64_bit_mode_follow_cpuid() {
    for advertised in [false, true] {
        let mut m = Machine::new(M::Long64);
        let model = m.eng.model_mut();
        let e = model
            .entries
            .iter_mut()
            .find(|e| e.leaf == 0x8000_0001)
            .expect("the model has leaf 0x80000001");
        e.regs[2] = (e.regs[2] & !1) | u32::from(advertised);
        m.load(|a| {
            a.mov(eax, 0xd5_00u32).unwrap(); // AH = SF ZF AF PF CF
            a.sahf().unwrap();
            a.mov(eax, 0u32).unwrap();
            a.lahf().unwrap();
            a.hlt().unwrap();
        });
        m.cpu.rip = CODE;
        m.policy.exceptions = u32::MAX;
        let e = m.run(100);
        if advertised {
            assert_eq!(e.kind, EventKind::Hlt, "{e:?}");
            assert_eq!(m.gpr(0), 0xd7_00, "AH = flags | bit 1");
        } else {
            match e.kind {
                EventKind::Intercept(i) => assert!(
                    matches!(
                        i.kind,
                        hyperplug_emulator::InterceptKind::Exception { vector: 6, .. }
                    ),
                    "{i:?}"
                ),
                other => panic!("expected #UD, got {other:?}"),
            }
        }
    }
}

/// XADD with a memory destination whose address uses the source register:
/// the address is formed before the register gets the old memory value
/// (SDM vol. 2, XADD). Found as seed 1 case 2314:
/// `xadd [r8+r10*2+0xa7f], r10`.
#[test]
fn xadd_memory_address_uses_source_register() {
    for idx in [0u64, 1, 5] {
        let mut m = Machine::new(M::Long64);
        let base = DATA + 0x100;
        let slot = base + idx * 2;
        assert!(m.bus.load(slot, &40u64.to_le_bytes()));
        m.load(|a| {
            a.mov(r8, base).unwrap();
            a.mov(r10, idx).unwrap();
            a.xadd(qword_ptr(r8 + r10 * 2), r10).unwrap();
            a.hlt().unwrap();
        });
        m.cpu.rip = CODE;
        m.run_to_hlt();
        assert_eq!(
            m.gpr(10),
            40,
            "the register gets the old memory value (idx {idx})"
        );
        assert_eq!(
            m.bus.peek_u64(slot),
            40 + idx,
            "memory gets the sum (idx {idx})"
        );
    }
}

/// The single-step #DB trap obeys the exception intercept bitmap like every
/// other exception. Found by the KVM CPL-0 oracle: `push 0x102; popfd; nop`
/// with every exception intercepted delivered #DB through the IDT instead of
/// stopping with the RIP after the `nop`.
#[test]
fn single_step_trap_is_intercepted() {
    let mut m = Machine::new(M::Long64);
    m.load(|a| {
        a.push(0x102).unwrap(); // TF | reserved bit 1
        a.popfq().unwrap();
        a.nop().unwrap();
        a.hlt().unwrap();
    });
    m.cpu.rip = CODE;
    m.policy.exceptions = u32::MAX;
    let e = m.run(100);
    match e.kind {
        EventKind::Intercept(i) => {
            assert!(
                matches!(
                    i.kind,
                    hyperplug_emulator::InterceptKind::Exception { vector: 1, .. }
                ),
                "{i:?}"
            );
        }
        other => panic!("expected the #DB intercept, got {other:?}"),
    }
    assert_ne!(m.cpu.dr[6] & (1 << 14), 0, "DR6.BS set");
}
