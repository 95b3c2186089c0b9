//! The host-owned MMU (the `arch/x86/kvm/mmu/` of the project): guest
//! page-table walks for every paging mode, a software TLB, shadow paging,
//! and second-level translation in both vendors' formats (EPT and NPT).
//!
//! Everything here reaches guest-physical memory through [`PhysMemory`], so
//! the same walker serves a flat guest (memory slots), a nested guest (guest
//! tables read through EPT/NPT) and tests (a `Vec<u8>`).

pub mod access;
pub mod context;
pub mod dirty;
pub mod fault;
pub mod nested;
pub mod paging;
pub mod phys;
pub mod shadow;
pub mod testmem;
pub mod tlb;
pub mod track;
pub mod walk;

pub use access::{Access, AccessKind};
pub use context::{PagingContext, PagingMode};
pub use fault::{NestedFault, NestedKind, PageFault, PfErrorCode, WalkError};
pub use phys::{PhysError, PhysMemory};
pub use walk::{walk, AdUpdate, Translation};
