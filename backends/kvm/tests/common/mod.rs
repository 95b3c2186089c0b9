//! Shared helpers for the /dev/kvm tests: skip logic, guest memory, a test host.
#![allow(dead_code)]

use hyperplug_backend_kvm::{KvmBackend, KvmVcpu, KvmVm};
use hyperplug_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use hyperplug_plugin_api::abi_stable::std_types::{RArc, RStr};
use hyperplug_plugin_api::backend::{
    Backend, BackendHost, FfiBackendHost, FfiBackendHost_TO, LogLevel, MemorySlot, Vcpu, Vm,
    VmConfig,
};
use hyperplug_plugin_api::state::{Regs, Segment, Sregs};
use hyperplug_plugin_api::{Exit, ExitReason};

/// Returns false (after printing the skip line) when /dev/kvm cannot be used.
pub fn kvm_usable() -> bool {
    let d = KvmBackend::detect();
    if !d.usable {
        // Direct write, not `eprintln!` (which the harness captures), so CI logs show it.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: /dev/kvm not usable ({})",
            d.reason
        );
    }
    d.usable
}

/// A host that prints backend log lines to stderr.
#[derive(Clone)]
pub struct TestHost;

impl FfiBackendHost for TestHost {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        eprintln!("[kvm {level:?}] {message}");
    }
    fn create_engine(
        &self,
        _vcpu: u32,
    ) -> hyperplug_plugin_api::PluginResult<hyperplug_plugin_api::engine::EngineBox> {
        // The kvm backend runs guests on KVM, never on the host's engine.
        hyperplug_plugin_api::abi_stable::std_types::RResult::RErr(
            hyperplug_plugin_api::PluginError::unsupported("no engine in the kvm backend's tests"),
        )
    }
}

/// The host services object for tests.
pub fn host() -> BackendHost {
    FfiBackendHost_TO::from_ptr(RArc::new(TestHost), TD_Opaque)
}

/// Anonymous host memory backing a slot.
pub struct GuestMem {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by this value and only accessed through it.
unsafe impl Send for GuestMem {}

impl GuestMem {
    /// Maps `len` zeroed bytes.
    pub fn new(len: usize) -> Self {
        // SAFETY: a fresh private anonymous mapping; the result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap failed");
        Self { ptr: p.cast(), len }
    }

    /// Host address of the mapping.
    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Writes `bytes` at `offset`.
    pub fn write(&self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.len);
        // SAFETY: bounds checked above; the mapping is live.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(offset), bytes.len()) }
    }

    /// Reads `len` bytes at `offset`.
    pub fn read(&self, offset: usize, len: usize) -> Vec<u8> {
        assert!(offset + len <= self.len);
        let mut v = vec![0; len];
        // SAFETY: bounds checked above; the mapping is live.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(offset), v.as_mut_ptr(), len) }
        v
    }
}

impl Drop for GuestMem {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what new() mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A one-vCPU VM with `mem` at guest-physical 0 (slot 0).
pub fn vm_with_memory(mem: &GuestMem) -> (KvmVm, KvmVcpu) {
    let vm = KvmBackend::create_vm(
        host(),
        &VmConfig {
            vcpus: 1,
            memory_bytes: mem.len() as u64,
            flags: 0,
        },
    )
    .expect("create_vm");
    vm.add_memory_slot(MemorySlot {
        id: 0,
        flags: 0,
        guest_phys_addr: 0,
        size: mem.len() as u64,
        host_addr: mem.addr(),
    })
    .expect("add slot 0");
    let vcpu = vm.create_vcpu(0).expect("create_vcpu");
    (vm, vcpu)
}

/// Real mode, CS=0 IP=`rip`, everything else from KVM's reset state.
pub fn enter_real_mode(vcpu: &mut KvmVcpu, rip: u64) {
    let mut s = vcpu.get_sregs().expect("get_sregs");
    s.cs.base = 0;
    s.cs.selector = 0;
    vcpu.set_sregs(&s).expect("set_sregs");
    vcpu.set_regs(&Regs {
        rip,
        rflags: 2,
        rsp: 0x7000,
        ..Default::default()
    })
    .expect("set_regs");
}

/// A flat code or data segment (SDM vol. 3, 3.4.5): `code` picks type 0xB
/// (execute/read, accessed) over 0x3 (read/write, accessed).
pub fn flat_segment(selector: u16, code: bool, long: bool) -> Segment {
    Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long && code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Applies flat CS/DS/ES/FS/GS/SS and a GDT at `gdt_base` to `s`.
pub fn flat_sregs(s: &mut Sregs, gdt_base: u64, long: bool) {
    s.cs = flat_segment(0x8, true, long);
    let data = flat_segment(0x10, false, long);
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.gdt.base = gdt_base;
    s.gdt.limit = 3 * 8 - 1;
}

/// Runs until an exit other than `Interrupted`, at most `limit` times.
pub fn run(vcpu: &mut KvmVcpu) -> Exit {
    for _ in 0..100 {
        let e = vcpu.run().expect("run");
        eprintln!(
            "exit: {} {} ({:?})",
            e.native_name, e.native_detail, e.reason
        );
        if e.reason != ExitReason::Interrupted {
            return e;
        }
    }
    panic!("100 Interrupted exits in a row");
}
