//! Where the guest's transmitted bytes go: stdout, a file, or (in tests) memory.

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// The destination behind a [`SharedOutput`].
enum Sink {
    /// The host process's standard output.
    Stdout,
    /// A file opened by the `path` option.
    File(File),
    /// An in-memory buffer (tests).
    Memory(Arc<Mutex<Vec<u8>>>),
}

/// A cloneable writer: reset and restore rebuild vm-superio's `Serial`, which
/// owns its writer, so every rebuilt instance gets a clone of the same sink.
#[derive(Clone)]
pub struct SharedOutput(Arc<Mutex<Sink>>);

impl SharedOutput {
    /// Writes to stdout.
    pub fn stdout() -> Self {
        Self::from_sink(Sink::Stdout)
    }

    /// Creates (or truncates) `path` and writes to it.
    pub fn file(path: &str) -> Result<Self, String> {
        File::create(path)
            .map(|f| Self::from_sink(Sink::File(f)))
            .map_err(|e| format!("cannot open serial output file '{path}': {e}"))
    }

    /// Writes into `buf` (for tests).
    pub fn memory(buf: Arc<Mutex<Vec<u8>>>) -> Self {
        Self::from_sink(Sink::Memory(buf))
    }

    fn from_sink(sink: Sink) -> Self {
        Self(Arc::new(Mutex::new(sink)))
    }

    fn with_sink<T>(&self, f: impl FnOnce(&mut Sink) -> io::Result<T>) -> io::Result<T> {
        let mut guard = match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

impl Write for SharedOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.with_sink(|s| match s {
            Sink::Stdout => io::stdout().lock().write(buf),
            Sink::File(f) => f.write(buf),
            Sink::Memory(m) => {
                let mut m = match m.lock() {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                };
                m.extend_from_slice(buf);
                Ok(buf.len())
            }
        })
    }

    /// vm-superio flushes after every transmitted byte, so output appears promptly.
    fn flush(&mut self) -> io::Result<()> {
        self.with_sink(|s| match s {
            Sink::Stdout => io::stdout().lock().flush(),
            Sink::File(f) => f.flush(),
            Sink::Memory(_) => Ok(()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_output_receives_bytes_and_clones_share_it() {
        let dir = std::env::temp_dir().join(format!("hyperplug-serial-out-{}", std::process::id()));
        let path = dir.to_string_lossy().to_string();
        let mut a = SharedOutput::file(&path).unwrap();
        let mut b = a.clone();
        a.write_all(b"he").unwrap();
        b.write_all(b"llo").unwrap();
        a.flush().unwrap();
        assert_eq!(std::fs::read(&dir).unwrap(), b"hello");
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn unopenable_file_is_a_clear_error() {
        let e = SharedOutput::file("/nonexistent-dir/x/y").err().unwrap();
        assert!(
            e.starts_with("cannot open serial output file '/nonexistent-dir/x/y'"),
            "{e}"
        );
    }
}
