//! Key sets seen before: a dict's members in canonical order, and their names already written.
//!
//! Tool inputs repeat their key sets: dicts built from literals, pydantic dumps and the rows of
//! a batch share the very same key `str` objects (literals are interned, a model keeps its
//! field names, `json.loads` reuses a key object within one document). A dict whose keys are,
//! by identity and in iteration order, those of a shape seen before needs no UTF-8 lookup, no
//! sort and no escaping of its names. A shape holds strong references to its keys, so no
//! other string can take their addresses while it is cached.
//!
//! A key set is cached on its second sighting, so dicts whose keys are never seen again (each
//! `json.loads` of a single object) cost one signature probe, not an insertion.

use std::rc::Rc;
use std::sync::Mutex;

use pyo3::ffi;

/// Shapes with more members are not cached (maps keyed by data rather than by schema).
pub const MAX_MEMBERS: usize = 64;
/// Nor shapes whose names are longer in all than this: the cache must not pin big strings.
pub const MAX_NAME_BYTES: usize = 2048;
/// Pairs of slots: a key set may take either slot of its pair, so two key sets of one input
/// that land on the same pair do not keep evicting each other.
const SLOTS: usize = 1024;
const SEEN: usize = 4096;

/// One cached key set.
pub struct Shape {
    sig: u64,
    /// When this shape was last found ([`Shapes::clock`]); the staler of a pair is replaced.
    used: std::cell::Cell<u64>,
    /// The keys in iteration order, each holding a strong reference.
    keys: Box<[*mut ffi::PyObject]>,
    /// For each member in canonical order, its index in iteration order.
    pub order: Box<[u32]>,
    /// `{"a":` then `,"b":` and so on, concatenated in canonical order.
    names: Box<[u8]>,
    /// End of each member's piece of `names`.
    ends: Box<[u32]>,
}

impl Shape {
    /// The opening brace or comma, then the quoted name and colon, of member `j`.
    #[inline]
    pub fn piece(&self, j: usize) -> &[u8] {
        let start = if j == 0 { 0 } else { self.ends[j - 1] as usize };
        &self.names[start..self.ends[j] as usize]
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }
}

impl Drop for Shape {
    fn drop(&mut self) {
        for &k in self.keys.iter() {
            // SAFETY: shapes are dropped only inside a walk, which holds the GIL.
            unsafe { ffi::Py_DECREF(k) }
        }
    }
}

/// Mixes one key's address into a key set's signature.
#[inline(always)]
pub fn mix(sig: u64, key: *mut ffi::PyObject) -> u64 {
    (sig.rotate_left(23) ^ key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A table index from a signature's high bits (its low bits barely vary: objects are aligned,
/// and a product's low bits depend only on its factors' low bits).
#[inline(always)]
fn index(sig: u64, len: usize) -> usize {
    (sig >> 40) as usize % len
}

pub const SEED: u64 = 0x243F_6A88_85A3_08D3;

#[derive(Default)]
pub struct Shapes {
    slots: Vec<Option<Rc<Shape>>>,
    seen: Vec<u64>,
    clock: u64,
}

// SAFETY: the `Rc`s and key pointers are touched only by the thread holding the mutex below
// (and the GIL); every clone of an `Rc` is dropped before that walk releases the mutex.
unsafe impl Send for Shapes {}

static SHAPES: Mutex<Shapes> = Mutex::new(Shapes {
    slots: Vec::new(),
    seen: Vec::new(),
    clock: 0,
});

/// The cache, unless another walk holds it (a `default=` re-entering us, or another thread).
pub fn lock() -> Option<std::sync::MutexGuard<'static, Shapes>> {
    SHAPES.try_lock().ok()
}

impl Shapes {
    /// The shape of a dict whose keys, in iteration order, are `keys`, with signature `sig`.
    #[inline]
    pub fn find(
        &mut self,
        sig: u64,
        keys: impl ExactSizeIterator<Item = *mut ffi::PyObject> + Clone,
    ) -> Option<Rc<Shape>> {
        let pair = index(sig, SLOTS) & !1;
        let slots = self.slots.get(pair..pair + 2)?;
        let shape = slots.iter().flatten().find(|shape| {
            shape.sig == sig
                && shape.keys.len() == keys.len()
                && shape.keys.iter().copied().eq(keys.clone())
        })?;
        self.clock += 1;
        shape.used.set(self.clock);
        Some(Rc::clone(shape))
    }

    /// Whether a key set with this signature should be cached now: on its second sighting.
    pub fn wanted(&mut self, sig: u64) -> bool {
        if self.seen.is_empty() {
            self.seen = vec![0; SEEN];
            self.slots = vec![None; SLOTS];
        }
        let seen = &mut self.seen[index(sig, SEEN)];
        if *seen == sig {
            true
        } else {
            *seen = sig;
            false
        }
    }

    /// Cache a key set: `keys` in iteration order (each a live exact `str`), `order` the
    /// iteration index of each member in canonical order, `names[j]` member `j`'s quoted name.
    ///
    /// # Safety
    /// Every key is a live object and the GIL is held.
    pub unsafe fn insert(
        &mut self,
        sig: u64,
        keys: Vec<*mut ffi::PyObject>,
        order: Vec<u32>,
        quoted: impl Iterator<Item = Vec<u8>>,
    ) {
        let mut names = Vec::new();
        let mut ends = Vec::with_capacity(order.len());
        for (j, name) in quoted.enumerate() {
            names.push(if j == 0 { b'{' } else { b',' });
            names.extend_from_slice(&name);
            names.push(b':');
            ends.push(names.len() as u32);
        }
        for &k in &keys {
            ffi::Py_INCREF(k);
        }
        let shape = Shape {
            sig,
            used: std::cell::Cell::new(0),
            keys: keys.into(),
            order: order.into(),
            names: names.into(),
            ends: ends.into(),
        };
        // Take the free or the staler slot of the pair. Replacing a shape drops it (and its
        // references) unless a walk above us still uses it.
        let pair = index(sig, SLOTS) & !1;
        let age = |slot: &Option<Rc<Shape>>| slot.as_ref().map_or(0, |s| s.used.get());
        let slot = if age(&self.slots[pair]) <= age(&self.slots[pair + 1]) {
            pair
        } else {
            pair + 1
        };
        self.clock += 1;
        shape.used.set(self.clock);
        self.slots[slot] = Some(Rc::new(shape));
    }
}
