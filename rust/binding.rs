//! The Python-facing functions of `dar._core`, and the one place Rust errors become
//! Python exceptions (`dar.errors.CanonicalizationError`, defined once, in Python).

use std::cell::RefCell;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyString};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::canonical::to_hex;
use crate::error::{format_path, CanonError, MAX_DEPTH};
use crate::objects::{ascii_str, build_name};
use crate::pipeline::Pipeline;
use crate::text::{canonicalize_str_into, canonicalize_text_into};
use crate::walk::{Scratch, WalkError, Walker};

static CANON_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn raise(py: Python<'_>, message: String, path: String) -> PyErr {
    let cls = match CANON_ERROR.get_or_try_init(py, || {
        py.import("dar.errors")?
            .getattr("CanonicalizationError")
            .map(Bound::unbind)
    }) {
        Ok(cls) => cls.bind(py),
        Err(e) => return e,
    };
    match cls.call1((message, path)) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

impl From<CanonError> for PyErr {
    fn from(e: CanonError) -> PyErr {
        Python::attach(|py| raise(py, e.to_string(), e.path_string()))
    }
}

fn walk_error_to_py(py: Python<'_>, e: WalkError) -> PyErr {
    match e {
        WalkError::Py(err) => err,
        WalkError::Canon {
            problem,
            mut rev_path,
            ..
        } => {
            rev_path.reverse();
            let err = CanonError::new(problem, rev_path);
            raise(py, err.to_string(), format_path(&err.path))
        }
    }
}

thread_local! {
    /// Reused output buffer; `default=` may re-enter us, so a busy buffer is never shared.
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn with_buf<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let r = f(&mut buf);
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new(); // do not pin a huge buffer after one large payload
            }
            r
        }
        Err(_) => f(&mut Vec::new()),
    })
}

thread_local! {
    /// The walker's stacks, reused (a `default=` re-entering us gets fresh ones).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Write the canonical bytes of `obj` to `out`; with a `pipeline`, finished output may be
/// handed to it as the walk goes (`out` then ends with the rest).
fn canonical_into(
    obj: &Bound<'_, PyAny>,
    default: Option<&Bound<'_, PyAny>>,
    out: &mut Vec<u8>,
    pipeline: Option<&mut Pipeline>,
) -> PyResult<()> {
    let py = obj.py();
    let scratch = SCRATCH.with(|cell| {
        cell.try_borrow_mut()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    });
    // With `default=`, whose code may mutate what we walk, nothing is cached.
    let mut shapes = default.is_none().then(crate::shapes::lock).flatten();
    let mut walker = Walker::new(py, default, out, shapes.as_deref_mut(), pipeline, scratch);
    // SAFETY: `obj` is alive for the call and the GIL is held (we have a `Python` token).
    let result = unsafe { walker.write(obj.as_ptr(), 0) };
    let scratch = walker.into_scratch();
    SCRATCH.with(|cell| {
        if let Ok(mut s) = cell.try_borrow_mut() {
            *s = scratch;
        }
    });
    result.map_err(|e| walk_error_to_py(py, e))
}

/// The hex digest as a Python `str`, built straight from the stack buffer.
fn sha256_pystr<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    hex_pystr(py, &to_hex(&Sha256::digest(bytes).into()))
}

fn hex_pystr<'py>(py: Python<'py>, hex: &[u8; 64]) -> PyResult<Bound<'py, PyString>> {
    // SAFETY: hex digits are ASCII; the GIL is held; a null result has its exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ascii_str(hex)).map(|s| s.cast_into_unchecked()) }
}

/// JSON text handed to us: a Python `str` (already valid UTF-8) or `bytes` (not yet checked).
enum Text<'a> {
    Str(&'a str),
    Bytes(&'a [u8]),
}

impl Text<'_> {
    fn canonicalize_into(&self, out: &mut Vec<u8>) -> Result<(), CanonError> {
        match self {
            Text::Str(s) => canonicalize_str_into(s, out),
            Text::Bytes(b) => canonicalize_text_into(b, out),
        }
    }
}

fn text_bytes<'a>(text: &'a Bound<'_, PyAny>) -> PyResult<Text<'a>> {
    if let Ok(s) = text.cast::<PyString>() {
        return s.to_str().map(Text::Str).map_err(|_| {
            raise(
                text.py(),
                "at $: invalid JSON: text contains a lone surrogate".to_owned(),
                "$".to_owned(),
            )
        });
    }
    if let Ok(b) = text.cast::<PyBytes>() {
        return Ok(Text::Bytes(b.as_bytes()));
    }
    Err(PyTypeError::new_err("JSON text must be str or bytes"))
}

/// RFC 8785 canonical JSON bytes of `obj`.
#[pyfunction]
#[pyo3(signature = (obj, *, default=None))]
fn canonical_json<'py>(
    obj: &Bound<'py, PyAny>,
    default: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    with_buf(|buf| {
        canonical_into(obj, default, buf, None)?;
        Ok(PyBytes::new(obj.py(), buf))
    })
}

/// The hex digest of `obj`'s canonical bytes (a large input's hashed on a second core as the
/// walk writes them).
fn hash_object<'py>(
    obj: &Bound<'py, PyAny>,
    default: Option<&Bound<'py, PyAny>>,
    buf: &mut Vec<u8>,
) -> PyResult<Bound<'py, PyString>> {
    // Only when no Python code can run during the walk (no `default=`): such code could take
    // the GIL elsewhere, fork, or hash again while our hashing job holds a worker.
    let mut pipeline = Pipeline::default();
    let pipeline_ok = default.is_none();
    canonical_into(obj, default, buf, pipeline_ok.then_some(&mut pipeline))?;
    hex_pystr(obj.py(), &to_hex(&pipeline.finish(buf)))
}

/// Lowercase hex SHA-256 of `canonical_json(obj)`.
#[pyfunction]
#[pyo3(signature = (obj, *, default=None))]
fn input_hash<'py>(
    obj: &Bound<'py, PyAny>,
    default: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyString>> {
    with_buf(|buf| hash_object(obj, default, buf))
}

/// `input_hash` of every item of an iterable, in one call.
#[pyfunction]
#[pyo3(signature = (objs, *, default=None))]
fn input_hashes<'py>(
    objs: &Bound<'py, PyAny>,
    default: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let py = objs.py();
    let hashes = PyList::empty(py);
    let mut buf = Vec::new();
    for item in objs.try_iter()? {
        buf.clear();
        hashes.append(hash_object(&item?, default, &mut buf)?)?;
    }
    Ok(hashes)
}

/// The hex digest of one text's canonical form; the error names nothing yet.
fn hash_text(text: &Text<'_>, buf: &mut Vec<u8>) -> Result<[u8; 64], CanonError> {
    buf.clear();
    text.canonicalize_into(buf)?;
    let hex = to_hex(&Sha256::digest(&buf[..]).into());
    if buf.capacity() > 1 << 20 {
        *buf = Vec::new();
    }
    Ok(hex)
}

/// `input_hash_from_text` of every text, without the GIL, on `threads` threads (every core
/// when `None`). A refusal names the first refused item's index and its JSONPath.
#[pyfunction]
#[pyo3(signature = (texts, threads=None))]
fn input_hashes_from_texts<'py>(
    texts: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyList>> {
    let py = texts.py();
    if threads == Some(0) {
        return Err(PyValueError::new_err("threads must be at least 1"));
    }
    // Own every item while the GIL is released: the views below borrow their data.
    let items = texts.try_iter()?.collect::<PyResult<Vec<_>>>()?;
    let views = items
        .iter()
        .enumerate()
        .map(|(i, t)| text_bytes(t).map_err(|e| name_item(py, i, e)))
        .collect::<PyResult<Vec<_>>>()?;
    // Taken with the GIL held (see `pool::get`); `None` runs on this process's pool.
    let pool = threads.is_none().then(crate::pool::get);
    let hashes: Vec<Result<[u8; 64], CanonError>> = py.detach(|| -> PyResult<_> {
        let run = || {
            views
                .par_iter()
                .map_init(Vec::new, |buf, t| hash_text(t, buf))
                .collect()
        };
        Ok(match threads {
            Some(1) => {
                let mut buf = Vec::new();
                views.iter().map(|t| hash_text(t, &mut buf)).collect()
            }
            Some(n) => rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| PyValueError::new_err(e.to_string()))?
                .install(run),
            None => pool.expect("taken above when threads is None").install(run),
        })
    })?;
    let out = PyList::empty(py);
    for (i, h) in hashes.into_iter().enumerate() {
        match h {
            Ok(hex) => out.append(hex_pystr(py, &hex)?)?,
            Err(e) => return Err(raise(py, format!("item {i}: {e}"), e.path_string())),
        }
    }
    Ok(out)
}

/// Prefix a refusal of item `i` with its index.
fn name_item(py: Python<'_>, i: usize, e: PyErr) -> PyErr {
    let Ok(cls) = CANON_ERROR.get_or_try_init(py, || {
        py.import("dar.errors")?
            .getattr("CanonicalizationError")
            .map(Bound::unbind)
    }) else {
        return e;
    };
    if !e.is_instance(py, cls.bind(py)) {
        return e;
    }
    let value = e.value(py);
    let path = value
        .getattr("path")
        .and_then(|p| p.extract::<String>())
        .unwrap_or_else(|_| "$".to_owned());
    raise(py, format!("item {i}: {value}"), path)
}

/// Canonical bytes of JSON text, parsed in Rust; duplicate member names are refused.
#[pyfunction]
fn canonical_json_from_text<'py>(
    py: Python<'py>,
    text: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let src = text_bytes(text)?;
    with_buf(|buf| {
        src.canonicalize_into(buf)?;
        Ok(PyBytes::new(py, buf))
    })
}

/// Lowercase hex SHA-256 of `canonical_json_from_text(text)`.
#[pyfunction]
fn input_hash_from_text<'py>(text: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    let src = text_bytes(text)?;
    with_buf(|buf| {
        src.canonicalize_into(buf)?;
        sha256_pystr(text.py(), buf)
    })
}

/// Lowercase hex SHA-256 of raw bytes (used for hash chains over already-canonical rows).
#[pyfunction]
fn sha256_hex_of<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyString>> {
    sha256_pystr(py, data)
}

#[pymodule(gil_used = true)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MAX_DEPTH", MAX_DEPTH)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("BUILD", build_name(m.py()))?;
    m.add_function(wrap_pyfunction!(canonical_json, m)?)?;
    m.add_function(wrap_pyfunction!(input_hash, m)?)?;
    m.add_function(wrap_pyfunction!(input_hashes, m)?)?;
    m.add_function(wrap_pyfunction!(canonical_json_from_text, m)?)?;
    m.add_function(wrap_pyfunction!(input_hash_from_text, m)?)?;
    m.add_function(wrap_pyfunction!(input_hashes_from_texts, m)?)?;
    m.add_function(wrap_pyfunction!(sha256_hex_of, m)?)?;
    Ok(())
}
