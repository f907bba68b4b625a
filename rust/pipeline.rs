//! Hashing a large input on a second core while the walk goes on.
//!
//! SHA-256 is one sequential chain, but it need not wait for the walk: once the output of an
//! `input_hash` passes [`START_AT`], every [`CHUNK`] of finished output is handed to a rayon
//! worker that feeds the hash, while this thread (holding the GIL) keeps walking. Only the
//! last chunk is hashed after the walk. Small inputs, nearly all tool calls, never start it.
//!
//! The walk never waits on the worker until it has finished (sending never blocks), and the
//! worker never needs the GIL, so neither can hold the other up. It is used only for walks
//! that run no Python code (no `default=`): such code could hand the GIL to another thread,
//! re-enter `input_hash` or fork while this walk's job holds a worker.

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};

use sha2::{Digest, Sha256};

/// Output size at which hashing moves to another core.
const START_AT: usize = 64 * 1024;
/// Output handed over at a time once it has.
const CHUNK: usize = 32 * 1024;

/// The hashing side of a walk: nothing until the output grows past [`START_AT`].
#[derive(Default)]
pub struct Pipeline {
    running: Option<Running>,
}

struct Running {
    chunks: Sender<Vec<u8>>,
    done: Receiver<Sha256>,
}

impl Pipeline {
    /// Called by the walk between values: hand the finished whole blocks of `out` over when
    /// there are enough of them (`out` keeps the rest).
    #[inline(always)]
    pub fn feed(&mut self, out: &mut Vec<u8>) {
        let limit = if self.running.is_some() {
            CHUNK
        } else {
            START_AT
        };
        if out.len() >= limit {
            self.hand_over(out);
        }
    }

    #[cold]
    fn hand_over(&mut self, out: &mut Vec<u8>) {
        let running = self.running.get_or_insert_with(start);
        let whole = out.len() & !63;
        let mut rest = Vec::with_capacity(out.capacity());
        rest.extend_from_slice(&out[whole..]);
        out.truncate(whole);
        let chunk = std::mem::replace(out, rest);
        // Never blocks (the channel is unbounded): the walk, holding the GIL, must not wait on
        // a worker. The worker keeps its end until we drop ours and cannot fail.
        running
            .chunks
            .send(chunk)
            .expect("the hashing worker listens until the walk ends");
    }

    /// The digest of every byte handed over, followed by `tail`.
    pub fn finish(self, tail: &[u8]) -> [u8; 32] {
        let Some(Running { chunks, done }) = self.running else {
            return Sha256::digest(tail).into();
        };
        drop(chunks); // the worker hashes what it has, then hands the hash back
        let mut hasher = done.recv().expect("the hashing worker always answers");
        hasher.update(tail);
        hasher.finalize().into()
    }
}

fn start() -> Running {
    let (chunks, incoming) = channel::<Vec<u8>>();
    let (answer, done) = sync_channel::<Sha256>(1);
    crate::pool::get().spawn(move || {
        let mut hasher = Sha256::new();
        for chunk in incoming {
            hasher.update(&chunk);
        }
        // The walk may have failed and stopped listening: then the hash is not wanted.
        let _ = answer.send(hasher);
    });
    Running { chunks, done }
}
