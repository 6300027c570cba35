//! `mediaflow:plugin/input`: the `source` resource a metadata extractor reads lazily —
//! `size()` and `read(offset, len)` on the job's source file, never more than asked.

use crate::plugin::bindings::ReadError;
use crate::plugin::bindings::extractor::mediaflow::plugin::input;
use crate::plugin::source::SourceHandle;
use crate::plugin::state::HostState;
use wasmtime::component::{HasSelf, Linker, Resource};

/// Add the interface to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    input::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl input::Host for HostState {}

impl input::HostSource for HostState {
    fn size(&mut self, src: Resource<SourceHandle>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&src)?.size())
    }

    fn read(
        &mut self,
        src: Resource<SourceHandle>,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, ReadError>> {
        let handle = self.table.get(&src)?;
        Ok(match handle.read_at(offset, len) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(ReadError::OutOfRange),
            Err(e) => Err(ReadError::Io(e.to_string())),
        })
    }

    fn drop(&mut self, src: Resource<SourceHandle>) -> wasmtime::Result<()> {
        // Guests only ever see borrows; the host owns and deletes the handle after the call.
        let _ = src;
        Ok(())
    }
}
