//! The fw_cfg item table: the standard keys and the file directory.
//!
//! QEMU docs/specs/fw_cfg.rst: "Selector Register" (keys, bit 14 = write
//! channel, bit 15 = architecture-specific), "Signature" (0x0000, "QEMU"),
//! "Revision / feature bitmap" (0x0001, u32 little-endian: bit 0 traditional
//! interface, bit 1 DMA), "File Directory" (0x0019: u32 big-endian count,
//! then per file u32 BE size, u16 BE select, u16 reserved, 56-byte name, NUL
//! terminated); files are selected from key 0x0020 upwards. The numeric items
//! are little-endian (spec: "all values are little-endian unless noted").

use hyperplug_plugin_api::device::MachineInfo;
use std::collections::BTreeMap;

/// Signature "QEMU".
pub const FW_CFG_SIGNATURE: u16 = 0x0000;
/// Feature bitmap.
pub const FW_CFG_ID: u16 = 0x0001;
/// VM UUID (16 bytes).
pub const FW_CFG_UUID: u16 = 0x0002;
/// RAM size in bytes, u64.
pub const FW_CFG_RAM_SIZE: u16 = 0x0003;
/// No graphics, u16.
pub const FW_CFG_NOGRAPHIC: u16 = 0x0004;
/// Number of CPUs, u16.
pub const FW_CFG_NB_CPUS: u16 = 0x0005;
/// Boot menu, u16.
pub const FW_CFG_BOOT_MENU: u16 = 0x000e;
/// Maximum CPUs, u16.
pub const FW_CFG_MAX_CPUS: u16 = 0x000f;
/// File directory.
pub const FW_CFG_FILE_DIR: u16 = 0x0019;
/// Key of the first file.
pub const FW_CFG_FILE_FIRST: u16 = 0x0020;
/// Keys at or above this have the write-channel bit set.
pub const FW_CFG_WRITE_CHANNEL: u16 = 0x4000;

/// Feature bit 0: the traditional (port/MMIO) interface.
pub const FEATURE_TRADITIONAL: u32 = 1 << 0;
/// Feature bit 1: the DMA interface.
pub const FEATURE_DMA: u32 = 1 << 1;

/// Size of a file name field, including the terminating NUL.
pub const FILE_NAME_LEN: usize = 56;
/// Size of one directory entry.
pub const DIR_ENTRY_LEN: usize = 4 + 2 + 2 + FILE_NAME_LEN;
/// The most files: their keys must stay below the write-channel bit.
pub const MAX_FILES: usize = (FW_CFG_WRITE_CHANNEL - FW_CFG_FILE_FIRST) as usize;

/// E820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// Where RAM above the PCI hole starts.
pub const HIGH_RAM_BASE: u64 = 1 << 32;

/// The item table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Items {
    map: BTreeMap<u16, Vec<u8>>,
    /// File names in directory order (key = 0x20 + index).
    names: Vec<String>,
}

impl Items {
    /// Builds the standard items and the directory for `files` (names must be
    /// valid and unique: see [`check_name`]).
    pub fn new(info: &MachineInfo, dma: bool, files: Vec<(String, Vec<u8>)>) -> Self {
        let mut map = BTreeMap::new();
        map.insert(FW_CFG_SIGNATURE, b"QEMU".to_vec());
        let features = FEATURE_TRADITIONAL | if dma { FEATURE_DMA } else { 0 };
        map.insert(FW_CFG_ID, features.to_le_bytes().to_vec());
        map.insert(FW_CFG_UUID, vec![0; 16]);
        map.insert(FW_CFG_RAM_SIZE, info.ram_bytes.to_le_bytes().to_vec());
        map.insert(FW_CFG_NOGRAPHIC, 1u16.to_le_bytes().to_vec());
        let cpus = u16::try_from(info.cpus).unwrap_or(u16::MAX);
        map.insert(FW_CFG_NB_CPUS, cpus.to_le_bytes().to_vec());
        map.insert(FW_CFG_BOOT_MENU, 0u16.to_le_bytes().to_vec());
        map.insert(FW_CFG_MAX_CPUS, cpus.to_le_bytes().to_vec());
        let mut files = files;
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let mut dir = Vec::with_capacity(4 + files.len() * DIR_ENTRY_LEN);
        dir.extend_from_slice(&(files.len() as u32).to_be_bytes());
        let mut names = Vec::with_capacity(files.len());
        for (i, (name, data)) in files.into_iter().enumerate() {
            // At most MAX_FILES files, so the key fits below 0x4000.
            let key = FW_CFG_FILE_FIRST + i as u16;
            dir.extend_from_slice(&(data.len() as u32).to_be_bytes());
            dir.extend_from_slice(&key.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut field = [0u8; FILE_NAME_LEN];
            field[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&field);
            map.insert(key, data);
            names.push(name);
        }
        map.insert(FW_CFG_FILE_DIR, dir);
        Self { map, names }
    }

    /// The contents of item `key` (the write-channel bit ignored); empty if none.
    pub fn get(&self, key: u16) -> &[u8] {
        self.map
            .get(&(key & !FW_CFG_WRITE_CHANNEL))
            .map_or(&[], |v| v.as_slice())
    }

    /// The key of file `name`.
    pub fn file_key(&self, name: &str) -> Option<u16> {
        let i = self.names.iter().position(|n| n == name)?;
        Some(FW_CFG_FILE_FIRST + i as u16)
    }
}

/// Refuses a file name that does not fit the directory's 56-byte field.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a file name is empty".into());
    }
    if name.len() >= FILE_NAME_LEN {
        return Err(format!(
            "file name '{name}' is {} bytes; at most {} fit",
            name.len(),
            FILE_NAME_LEN - 1
        ));
    }
    if name.contains('\0') {
        return Err(format!("file name '{name}' contains a NUL byte"));
    }
    Ok(())
}

/// The `etc/e820` file: one entry per RAM range, each {u64 address, u64
/// length, u32 type} little-endian (QEMU's `struct e820_entry`): RAM from 0
/// to the top of low RAM, and RAM above 4 GiB.
pub fn e820(info: &MachineInfo) -> Vec<u8> {
    let low = info.low_ram_bytes.min(info.ram_bytes);
    let high = info.ram_bytes - low;
    let mut out = Vec::new();
    for (base, len) in [(0, low), (HIGH_RAM_BASE, high)] {
        if len == 0 {
            continue;
        }
        out.extend_from_slice(&base.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&E820_RAM.to_le_bytes());
    }
    out
}
