//! Walk Python objects straight into canonical JSON bytes.
//!
//! The hot path of every tool call: exact-type checks first (`str`, `int`, `float`, `dict`,
//! `list`, the singletons), subclasses next, `default=` last. No intermediate Python objects
//! are created. Every container's items are held by a strong reference while they are
//! written, because `default=` runs arbitrary Python that may mutate what we are walking.

use std::ptr;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;

use crate::canonical::{ascii_prefix, cmp_utf16, copy_piece, write_f64, write_int, write_str};
use crate::error::{Problem, Seg, MAX_DEPTH};
use crate::objects::{float_value, seq_item, seq_len};
use crate::pipeline::Pipeline;
use crate::shapes::{self, Shape, Shapes};
use std::cmp::Ordering;
use std::rc::Rc;

/// A failure while walking: a canonicalization problem, or a Python exception raised by
/// `default=`, which is passed through unchanged.
pub enum WalkError {
    Canon {
        problem: Problem,
        /// Segments pushed while unwinding, innermost first.
        rev_path: Vec<Seg>,
        /// Containers nested deeper than this add no segment (a cycle is reported where it
        /// closes, not where the depth limit noticed it).
        keep_depth: usize,
    },
    Py(PyErr),
}

impl WalkError {
    fn canon(problem: Problem, depth: usize) -> Self {
        WalkError::Canon {
            problem,
            rev_path: Vec::new(),
            keep_depth: depth,
        }
    }

    fn at(mut self, depth: usize, seg: impl FnOnce() -> Seg) -> Self {
        if let WalkError::Canon {
            rev_path,
            keep_depth,
            ..
        } = &mut self
        {
            if depth <= *keep_depth {
                rev_path.push(seg());
            }
        }
        self
    }
}

/// Owns one strong reference for the lifetime of the guard.
struct Owned(*mut ffi::PyObject);

impl Owned {
    /// # Safety
    /// `p` must be a valid object pointer.
    unsafe fn borrow(p: *mut ffi::PyObject) -> Self {
        ffi::Py_INCREF(p);
        Owned(p)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        unsafe { ffi::Py_DECREF(self.0) }
    }
}

/// The walk's stacks, kept per thread between calls so a call allocates nothing.
#[derive(Default)]
pub struct Scratch {
    /// Containers on the current path, for telling a cycle from mere depth.
    stack: Vec<*mut ffi::PyObject>,
    /// Dict items (key, value) in iteration order.
    items: Vec<(*mut ffi::PyObject, *mut ffi::PyObject)>,
    /// Dict members being sorted.
    members: Vec<Member>,
}

pub struct Walker<'a, 'py> {
    py: Python<'py>,
    default: Option<&'a Bound<'py, PyAny>>,
    out: &'a mut Vec<u8>,
    /// Key sets seen before; `None` when `default=` may run code that changes what we walk,
    /// or when another walk holds the cache.
    shapes: Option<&'a mut Shapes>,
    /// When hashing: takes finished output off our hands as the walk goes (large inputs).
    pipeline: Option<&'a mut Pipeline>,
    /// Containers on the current path, for telling a cycle from mere depth.
    stack: Vec<*mut ffi::PyObject>,
    /// Stack of dict items, (key, value) in iteration order, shared by every dict of the walk
    /// (no allocation per dict): nested dicts push above and truncate back.
    items: Vec<(*mut ffi::PyObject, *mut ffi::PyObject)>,
    /// Stack of dict members being sorted.
    members: Vec<Member>,
}

/// A dict member: its name's UTF-8 (owned by the key object) and its item's index.
#[derive(Clone, Copy)]
struct Member {
    /// `ascii_prefix(name)`, or `u64::MAX` (never trusted) when the prefix is not ASCII.
    prefix: u64,
    name: *const u8,
    len: usize,
    /// Index in iteration order.
    index: u32,
}

impl Member {
    #[inline]
    fn cmp(&self, other: &Member) -> Ordering {
        if self.prefix != u64::MAX && other.prefix != u64::MAX && self.prefix != other.prefix {
            return self.prefix.cmp(&other.prefix);
        }
        cmp_utf16(self.name(), other.name())
    }

    #[inline]
    fn name<'s>(&self) -> &'s [u8] {
        // SAFETY: the key object, which owns this UTF-8, outlives the member's use.
        unsafe { std::slice::from_raw_parts(self.name, self.len) }
    }
}

#[inline]
unsafe fn is_type(obj: *mut ffi::PyObject, ty: *mut ffi::PyTypeObject) -> bool {
    ffi::Py_TYPE(obj) == ty
}

fn type_name(py: Python<'_>, obj: *mut ffi::PyObject) -> String {
    // SAFETY: callers pass a live object while holding the GIL.
    let obj = unsafe { Bound::from_borrowed_ptr(py, obj) };
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "<unknown>".to_owned())
}

/// The UTF-8 of a `str`; `None` (error cleared) when it holds a lone surrogate.
#[inline]
unsafe fn utf8<'s>(obj: *mut ffi::PyObject) -> Option<&'s [u8]> {
    let mut len: ffi::Py_ssize_t = 0;
    let p = ffi::PyUnicode_AsUTF8AndSize(obj, &mut len);
    if p.is_null() {
        ffi::PyErr_Clear();
        None
    } else {
        Some(std::slice::from_raw_parts(p as *const u8, len as usize))
    }
}

/// The path segment of a member, from its key object.
unsafe fn key_seg(k: *mut ffi::PyObject) -> Seg {
    Seg::Key(match utf8(k) {
        Some(name) => String::from_utf8_lossy(name).into_owned(),
        None => String::new(),
    })
}

impl<'a, 'py> Walker<'a, 'py> {
    pub fn new(
        py: Python<'py>,
        default: Option<&'a Bound<'py, PyAny>>,
        out: &'a mut Vec<u8>,
        shapes: Option<&'a mut Shapes>,
        pipeline: Option<&'a mut Pipeline>,
        scratch: Scratch,
    ) -> Self {
        Walker {
            py,
            pipeline,
            // With `default=` nothing is cached: its code may mutate dicts as we walk them.
            shapes: shapes.filter(|_| default.is_none()),
            default,
            out,
            stack: scratch.stack,
            items: scratch.items,
            members: scratch.members,
        }
    }

    /// Hand the (emptied) stacks back for the next walk.
    pub fn into_scratch(mut self) -> Scratch {
        self.stack.clear();
        self.items.clear();
        self.members.clear();
        Scratch {
            stack: self.stack,
            items: self.items,
            members: self.members,
        }
    }

    /// Between values: let the pipeline take finished output, if there is one.
    #[inline(always)]
    fn feed(&mut self) {
        if let Some(pipeline) = self.pipeline.as_mut() {
            pipeline.feed(self.out);
        }
    }

    /// Write `obj` at nesting `depth` (the number of containers around it).
    ///
    /// # Safety
    /// `obj` must be a valid object pointer kept alive by the caller; the GIL is held.
    pub unsafe fn write(&mut self, obj: *mut ffi::PyObject, depth: usize) -> Result<(), WalkError> {
        if is_type(obj, &raw mut ffi::PyUnicode_Type) {
            return self.write_pystr(obj, depth);
        }
        if is_type(obj, &raw mut ffi::PyLong_Type) {
            return self.write_pyint(obj, depth);
        }
        if obj == ffi::Py_True() {
            self.out.extend_from_slice(b"true");
            return Ok(());
        }
        if obj == ffi::Py_False() {
            self.out.extend_from_slice(b"false");
            return Ok(());
        }
        if obj == ffi::Py_None() {
            self.out.extend_from_slice(b"null");
            return Ok(());
        }
        if is_type(obj, &raw mut ffi::PyFloat_Type) {
            return write_f64(self.out, float_value(obj)).map_err(|p| WalkError::canon(p, depth));
        }
        if is_type(obj, &raw mut ffi::PyDict_Type) {
            return self.write_dict(obj, depth);
        }
        if is_type(obj, &raw mut ffi::PyList_Type) || is_type(obj, &raw mut ffi::PyTuple_Type) {
            return self.write_seq(obj, depth);
        }
        // Subclasses: str and int subclasses (e.g. StrEnum, IntEnum) keep their base meaning.
        if ffi::PyUnicode_Check(obj) != 0 {
            return self.write_pystr(obj, depth);
        }
        if ffi::PyLong_Check(obj) != 0 {
            return self.write_pyint(obj, depth);
        }
        if ffi::PyFloat_Check(obj) != 0 {
            let f = float_value(obj);
            return write_f64(self.out, f).map_err(|p| WalkError::canon(p, depth));
        }
        if ffi::PyDict_Check(obj) != 0 {
            return self.write_dict(obj, depth);
        }
        if ffi::PyList_Check(obj) != 0 || ffi::PyTuple_Check(obj) != 0 {
            return self.write_seq(obj, depth);
        }
        self.write_default(obj, depth)
    }

    unsafe fn write_pystr(
        &mut self,
        obj: *mut ffi::PyObject,
        depth: usize,
    ) -> Result<(), WalkError> {
        match utf8(obj) {
            Some(b) => {
                write_str(self.out, std::str::from_utf8_unchecked(b));
                Ok(())
            }
            None => Err(WalkError::canon(Problem::LoneSurrogate, depth)),
        }
    }

    unsafe fn write_pyint(
        &mut self,
        obj: *mut ffi::PyObject,
        depth: usize,
    ) -> Result<(), WalkError> {
        let mut overflow = 0;
        let n = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
        if overflow != 0 {
            let what = if overflow > 0 {
                "above 2**63"
            } else {
                "below -2**63"
            };
            return Err(WalkError::canon(
                Problem::IntOutOfRange(what.to_owned()),
                depth,
            ));
        }
        if n == -1 && !ffi::PyErr_Occurred().is_null() {
            return Err(WalkError::Py(PyErr::fetch(self.py)));
        }
        write_int(self.out, n).map_err(|p| WalkError::canon(p, depth))
    }

    /// Enter a container: refuse it when too deep, telling a cycle apart from depth.
    fn enter(&mut self, obj: *mut ffi::PyObject, depth: usize) -> Result<(), WalkError> {
        if depth > MAX_DEPTH {
            // Where does the path first revisit a container? Report the cycle there.
            for (j, p) in self.stack.iter().enumerate() {
                if self.stack[..j].contains(p) {
                    return Err(WalkError::canon(Problem::Cycle, j));
                }
            }
            return Err(WalkError::canon(Problem::TooDeep, depth));
        }
        self.stack.push(obj);
        Ok(())
    }

    unsafe fn write_seq(&mut self, obj: *mut ffi::PyObject, depth: usize) -> Result<(), WalkError> {
        let depth = depth + 1;
        self.enter(obj, depth)?;
        let is_list = ffi::PyList_Check(obj) != 0;
        self.out.push(b'[');
        let mut i: ffi::Py_ssize_t = 0;
        // Re-read the length each time: `default=` may have resized a list.
        loop {
            if i >= seq_len(obj, is_list) {
                break;
            }
            let item = seq_item(obj, is_list, i);
            if item.is_null() {
                return Err(WalkError::Py(PyErr::fetch(self.py)));
            }
            // `default=` may run code that shrinks this list: own the item while writing it.
            let _owned = self.default.is_some().then(|| Owned::borrow(item));
            if i > 0 {
                self.out.push(b',');
            }
            let idx = i as usize;
            self.write(item, depth)
                .map_err(|e| e.at(depth, || Seg::Index(idx)))?;
            self.feed();
            i += 1;
        }
        self.out.push(b']');
        self.stack.pop();
        Ok(())
    }

    unsafe fn write_dict(
        &mut self,
        obj: *mut ffi::PyObject,
        depth: usize,
    ) -> Result<(), WalkError> {
        let depth = depth + 1;
        self.enter(obj, depth)?;
        let base = self.items.len();
        let mut pos: ffi::Py_ssize_t = 0;
        let mut k: *mut ffi::PyObject = ptr::null_mut();
        let mut v: *mut ffi::PyObject = ptr::null_mut();
        let mut sig = shapes::SEED;
        let mut exact = true;
        while ffi::PyDict_Next(obj, &mut pos, &mut k, &mut v) != 0 {
            if self.default.is_some() {
                // `default=` may run code that mutates this dict: own what we are about to read.
                ffi::Py_INCREF(k);
                ffi::Py_INCREF(v);
            }
            exact &= is_type(k, &raw mut ffi::PyUnicode_Type);
            sig = shapes::mix(sig, k);
            self.items.push((k, v));
        }
        let n = self.items.len() - base;
        let known = match &mut self.shapes {
            Some(cache) if exact && (1..=shapes::MAX_MEMBERS).contains(&n) => {
                cache.find(sig, self.items[base..].iter().map(|&(k, _)| k))
            }
            _ => None,
        };
        let result = match known {
            Some(shape) => self.write_shaped(&shape, base, depth),
            None => self.write_sorted(base, depth, sig, exact),
        };
        if self.default.is_some() {
            for &(k, v) in &self.items[base..] {
                ffi::Py_DECREF(k);
                ffi::Py_DECREF(v);
            }
        }
        self.items.truncate(base);
        result?;
        self.stack.pop();
        self.feed();
        Ok(())
    }

    /// Write a dict whose key set was seen before: names as cached, values in cached order.
    unsafe fn write_shaped(
        &mut self,
        shape: &Rc<Shape>,
        base: usize,
        depth: usize,
    ) -> Result<(), WalkError> {
        for j in 0..shape.len() {
            copy_piece(self.out, shape.piece(j));
            let (k, v) = self.items[base + shape.order[j] as usize];
            self.write(v, depth)
                .map_err(|e| e.at(depth, || key_seg(k)))?;
        }
        self.out.push(b'}');
        Ok(())
    }

    /// Write a dict by sorting its members; cache its key set if it is worth it.
    unsafe fn write_sorted(
        &mut self,
        base: usize,
        depth: usize,
        sig: u64,
        exact: bool,
    ) -> Result<(), WalkError> {
        let mbase = self.members.len();
        let result = self.sort_members(base, mbase, depth, exact).and_then(|()| {
            self.out.push(b'{');
            for i in mbase..self.members.len() {
                let m = self.members[i];
                if i > mbase {
                    self.out.push(b',');
                }
                write_str(self.out, std::str::from_utf8_unchecked(m.name()));
                self.out.push(b':');
                let (k, v) = self.items[base + m.index as usize];
                self.write(v, depth)
                    .map_err(|e| e.at(depth, || key_seg(k)))?;
            }
            self.out.push(b'}');
            Ok(())
        });
        if result.is_ok() {
            self.remember(base, mbase, sig, exact);
        }
        self.members.truncate(mbase);
        result
    }

    /// Push this dict's members above `mbase`, sorted in canonical order.
    unsafe fn sort_members(
        &mut self,
        base: usize,
        mbase: usize,
        depth: usize,
        exact: bool,
    ) -> Result<(), WalkError> {
        for (index, &(k, _)) in self.items[base..].iter().enumerate() {
            if !exact && !is_type(k, &raw mut ffi::PyUnicode_Type) && ffi::PyUnicode_Check(k) == 0 {
                let problem = Problem::NonStringKey(type_name(self.py, k));
                return Err(WalkError::canon(problem, depth));
            }
            let Some(name) = utf8(k) else {
                return Err(WalkError::canon(Problem::LoneSurrogate, depth));
            };
            self.members.push(Member {
                prefix: ascii_prefix(name).unwrap_or(u64::MAX),
                name: name.as_ptr(),
                len: name.len(),
                index: index as u32,
            });
        }
        let slice = &mut self.members[mbase..];
        slice.sort_unstable_by(Member::cmp);
        // Only `str` subclasses with their own __eq__/__hash__ can get here with equal names.
        if !exact {
            if let Some(w) = slice.windows(2).find(|w| w[0].name() == w[1].name()) {
                let name = String::from_utf8_lossy(w[0].name()).into_owned();
                return Err(WalkError::canon(Problem::DuplicateKey(name), depth));
            }
        }
        Ok(())
    }

    /// Cache the key set of the dict just written (members above `mbase`), on its second
    /// sighting, if its keys are all exact `str`s.
    unsafe fn remember(&mut self, base: usize, mbase: usize, sig: u64, exact: bool) {
        let n = self.members.len() - mbase;
        let Some(cache) = self.shapes.as_mut() else {
            return;
        };
        let members = &self.members[mbase..];
        let small = || members.iter().map(|m| m.len).sum::<usize>() <= shapes::MAX_NAME_BYTES;
        if !exact || !(1..=shapes::MAX_MEMBERS).contains(&n) || !small() || !cache.wanted(sig) {
            return;
        }
        let keys = self.items[base..].iter().map(|&(k, _)| k).collect();
        let order = members.iter().map(|m| m.index).collect();
        let quoted = members.iter().map(|m| {
            let mut q = Vec::with_capacity(m.len + 2);
            write_str(&mut q, std::str::from_utf8_unchecked(m.name()));
            q
        });
        cache.insert(sig, keys, order, quoted);
    }

    unsafe fn write_default(
        &mut self,
        obj: *mut ffi::PyObject,
        depth: usize,
    ) -> Result<(), WalkError> {
        let Some(default) = self.default else {
            return Err(WalkError::canon(
                Problem::Unsupported(type_name(self.py, obj)),
                depth,
            ));
        };
        // A `default` that returns its own argument (or keeps wrapping) must not loop forever:
        // each conversion counts as a level of nesting.
        let depth = depth + 1;
        if depth > MAX_DEPTH {
            return Err(WalkError::canon(Problem::TooDeep, depth));
        }
        let arg = Bound::from_borrowed_ptr(self.py, obj);
        let converted = default.call1((arg,)).map_err(WalkError::Py)?;
        if converted.as_ptr() == obj {
            return Err(WalkError::Py(PyTypeError::new_err(format!(
                "default() returned its argument of type {} unchanged",
                type_name(self.py, obj)
            ))));
        }
        self.write(converted.as_ptr(), depth)
    }
}
