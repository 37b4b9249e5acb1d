/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libsnap._core: the CPython binding of libsnap's public API.
 *
 * Objects:
 *   Store    a store handle (thread-safe; share it between threads)
 *   Pin      one pin on one version; its buffers keep it alive
 *   Buffer   a read-only (or, during a publish, writable) byte range exported
 *            through the buffer protocol; numpy arrays made from it keep it,
 *            and through it the Pin, alive: the version stays pinned exactly
 *            as long as any array, Series or DataFrame over it exists
 *   Publish  a publish in progress; commit refuses while buffers are exported
 *
 * Everything that may block (pin slow path, publish, gc, verify) runs with
 * the GIL released. Errors raise subclasses of libsnap.Error generated from
 * SNAP_ERROR_MAP, carrying .code, .name and the library's message.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <libsnap/arrow.h>
#include <libsnap/libsnap.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---------------------------------------------------------------- errors */

static PyObject *ErrorBase;    /* libsnap.Error */
static PyObject *OSErrorClass; /* libsnap.OSError(Error, builtins.OSError) */
#define X_COUNT(name, code, msg) +1
enum { NERRORS = 0 SNAP_ERROR_MAP(X_COUNT) };
#undef X_COUNT
static PyObject *ErrorClasses[NERRORS];
static const int ErrorCodes[NERRORS] = {
#define X_CODE(name, code, msg) code,
    SNAP_ERROR_MAP(X_CODE)
#undef X_CODE
};
static const char *const ErrorNames[NERRORS] = {
#define X_NAME(name, code, msg) #name,
    SNAP_ERROR_MAP(X_NAME)
#undef X_NAME
};

/* Python class name for a table entry: the few with a conventional Python
 * spelling, else the C name capitalised (BUSY -> Busy). */
static void class_name(const char *cname, char *out, size_t len) {
  static const char *const special[][2] = {
      {"NOTFOUND", "NotFound"},     {"FORMAT", "FormatError"},
      {"INVAL", "InvalidArgument"}, {"CHECKSUM", "ChecksumError"},
      {"CONTROL", "ControlError"},  {"MAPFULL", "MapFull"},
      {"RDONLY", "ReadOnly"}};
  for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
    if (!strcmp(special[i][0], cname)) {
      snprintf(out, len, "%s", special[i][1]);
      return;
    }
  snprintf(out, len, "%c", cname[0]);
  for (size_t i = 1; cname[i] && i + 1 < len; i++) {
    char c = cname[i];
    out[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    out[i + 1] = 0;
  }
}

static PyObject *raise_status(int rc, const struct snap_error *err) {
  const char *msg = err && err->message[0] ? err->message : snap_strerror(rc);
  PyObject *cls = NULL;
  for (int i = 0; i < NERRORS; i++)
    if (ErrorCodes[i] == rc) cls = ErrorClasses[i];
  PyObject *exc;
  if (cls) /* the library's own codes */
    exc = PyObject_CallFunction(cls, "s", msg);
  else if (rc < 0 && rc > -1000) /* -errno: also a builtins.OSError with errno set */
    exc = PyObject_CallFunction(OSErrorClass, "is", -rc, msg);
  else
    exc = PyObject_CallFunction(ErrorBase, "s", msg);
  if (!exc) return NULL;
  PyObject *code = PyLong_FromLong(rc);
  PyObject *name = PyUnicode_FromString(snap_error_name(rc));
  if (code && name) {
    PyObject_SetAttrString(exc, "code", code);
    PyObject_SetAttrString(exc, "name", name);
  }
  Py_XDECREF(code);
  Py_XDECREF(name);
  PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
  Py_DECREF(exc);
  return NULL;
}

/* An integer argument @p o in lo..hi. Anything else (bool, float, str, an
 * integer out of range) raises libsnap.InvalidArgument (a ValueError) naming
 * @p what and the value: a number is never wrapped or truncated. */
static int arg_uint(PyObject *o, const char *what, unsigned long long lo,
                    unsigned long long hi, unsigned long long *out) {
  struct snap_error err = {SNAP_EINVAL, ""};
  PyObject *r = PyObject_Repr(o);
  const char *rs = r ? PyUnicode_AsUTF8(r) : NULL;
  if (!rs) PyErr_Clear();
  /* int and what __index__ makes one (numpy integers); not bool, not float */
  int integral = !PyBool_Check(o) && !PyFloat_Check(o) && PyIndex_Check(o), ok = 0;
  unsigned long long v = 0;
  PyObject *i = integral ? PyNumber_Index(o) : NULL;
  if (i) {
    v = PyLong_AsUnsignedLongLong(i); /* OverflowError when < 0 or > 2**64 - 1 */
    ok = !PyErr_Occurred();
    Py_DECREF(i);
  }
  PyErr_Clear();
  if (ok && v >= lo && v <= hi) {
    Py_XDECREF(r);
    *out = v;
    return 0;
  }
  snprintf(err.message, sizeof err.message,
           "%s = %.120s%s: must be an integer from %llu to %llu", what, rs ? rs : "?",
           integral ? "" : " (not an integer)", lo, hi);
  Py_XDECREF(r);
  raise_status(SNAP_EINVAL, &err);
  return -1;
}

/* ----------------------------------------------------------------- types */

typedef struct {
  PyObject_HEAD snap_store *store;
} StoreObject;

typedef struct {
  PyObject_HEAD snap_snapshot *snap;
  PyObject *store; /* keeps the handle object alive for diagnostics */
} PinObject;

typedef struct {
  PyObject_HEAD snap_publish *pub;
  PyObject *store;
  Py_ssize_t exports; /* live buffer exports into the mapping */
  uint32_t ncols, nblocks;
  Py_buffer *sources; /* held for snap_publish_copy() until commit or abort */
  size_t nsources, capsources;
  PyObject *edit; /* the Edit set with edit(): its view must outlive the commit */
  void *kept;     /* keep_view(): the range this object unmaps when it goes */
  size_t kept_len;
} PublishObject;

typedef struct {
  PinObject pin; /* snap: a reference to the edit's base */
  snap_edit *ed;
} EditObject;

typedef struct {
  PyObject_HEAD PyObject *owner; /* PinObject or PublishObject */
  void *ptr;
  Py_ssize_t len;
  int writable;
} BufferObject;

static PyTypeObject StoreType, PinType, PublishType, BufferType, EditType;

static PyObject *store_closed(void) {
  PyErr_SetString(PyExc_ValueError, "libsnap store is closed");
  return NULL;
}

/* ---------------------------------------------------------------- Buffer */

static PyObject *buffer_new(PyObject *owner, const void *ptr, uint64_t len,
                            int writable) {
  BufferObject *b = PyObject_New(BufferObject, &BufferType);
  if (!b) return NULL;
  Py_INCREF(owner);
  b->owner = owner;
  /* A zero-length buffer still needs a valid address for numpy. */
  static char empty[64] __attribute__((aligned(64)));
  b->ptr = ptr ? (void *)ptr : empty;
  b->len = (Py_ssize_t)len;
  b->writable = writable;
  return (PyObject *)b;
}

static int buffer_getbuffer(PyObject *self, Py_buffer *view, int flags) {
  BufferObject *b = (BufferObject *)self;
  if ((flags & PyBUF_WRITABLE) && !b->writable) {
    PyErr_SetString(PyExc_BufferError, "libsnap snapshot buffers are read-only");
    return -1;
  }
  if (PyObject_TypeCheck(b->owner, &PublishType)) {
    PublishObject *p = (PublishObject *)b->owner;
    if (!p->pub && !p->kept) {
      PyErr_SetString(PyExc_BufferError, "the publish is already committed or aborted");
      return -1;
    }
    p->exports++;
  }
  return PyBuffer_FillInfo(view, self, b->ptr, b->len, !b->writable, flags);
}

static void buffer_releasebuffer(PyObject *self, Py_buffer *view) {
  (void)view;
  BufferObject *b = (BufferObject *)self;
  if (PyObject_TypeCheck(b->owner, &PublishType)) ((PublishObject *)b->owner)->exports--;
}

static void buffer_dealloc(PyObject *self) {
  BufferObject *b = (BufferObject *)self;
  Py_XDECREF(b->owner);
  PyObject_Free(self);
}

static PyObject *buffer_address(PyObject *self, void *closure) {
  (void)closure;
  return PyLong_FromVoidPtr(((BufferObject *)self)->ptr);
}

static PyBufferProcs buffer_procs = {buffer_getbuffer, buffer_releasebuffer};
static PyObject *buffer_owner(PyObject *self, void *closure) {
  (void)closure;
  PyObject *o = ((BufferObject *)self)->owner;
  Py_INCREF(o);
  return o;
}

static PyGetSetDef buffer_getset_all[] = {
    {"address", buffer_address, NULL, "start address of the range", NULL},
    {"owner", buffer_owner, NULL, "the Pin, Edit or Publish this range belongs to", NULL},
    {NULL}};

static Py_ssize_t buffer_len(PyObject *self) { return ((BufferObject *)self)->len; }
static PySequenceMethods buffer_seq = {.sq_length = buffer_len};

static PyTypeObject BufferType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "libsnap._core.Buffer",
    .tp_basicsize = sizeof(BufferObject),
    .tp_dealloc = buffer_dealloc,
    .tp_as_buffer = &buffer_procs,
    .tp_as_sequence = &buffer_seq,
    .tp_getset = buffer_getset_all,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A byte range of a pinned version (read-only) or of a publish in progress.",
};

/* ------------------------------------------------------------------- Pin */

static void pin_dealloc(PyObject *self) {
  PinObject *p = (PinObject *)self;
  if (p->snap) {
    snap_snapshot *s = p->snap;
    p->snap = NULL;
    Py_BEGIN_ALLOW_THREADS
    snap_unpin(s);
    Py_END_ALLOW_THREADS
  }
  Py_XDECREF(p->store);
  PyObject_Free(self);
}

static PyObject *pin_get(PyObject *self, void *closure) {
  snap_snapshot *s = ((PinObject *)self)->snap;
  switch ((intptr_t)closure) {
    case 0:
      return PyUnicode_FromString(snap_snapshot_dataset(s));
    case 1:
      return PyLong_FromUnsignedLongLong(snap_snapshot_version(s));
    case 2:
      return PyLong_FromUnsignedLongLong(snap_snapshot_nrows(s));
    case 3:
      return PyLong_FromUnsignedLong(snap_snapshot_ncols(s));
    case 4:
      return PyLong_FromUnsignedLong(snap_snapshot_nblocks(s));
    case 5: {
      size_t len;
      const void *m = snap_snapshot_metadata(s, &len);
      return PyBytes_FromStringAndSize(m ? m : "", (Py_ssize_t)len);
    }
    case 6:
      return PyUnicode_DecodeFSDefault(snap_snapshot_path(s));
    case 7:
      return PyLong_FromUnsignedLongLong(snap_snapshot_created_ns(s));
    case 8:
      return PyLong_FromUnsignedLongLong(snap_snapshot_mappings(s));
  }
  Py_RETURN_NONE;
}

static PyObject *opt_str(const char *s) {
  if (!s) Py_RETURN_NONE;
  return PyUnicode_FromString(s);
}

/* columns() -> list of (name, type, nullable, timezone, block, block_pos,
 *                       code_type, dict_size, data_bytes) */
static PyObject *pin_columns(PyObject *self, PyObject *unused) {
  (void)unused;
  snap_snapshot *s = ((PinObject *)self)->snap;
  uint32_t n = snap_snapshot_ncols(s);
  PyObject *list = PyList_New(n);
  if (!list) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    const struct snap_column *c = snap_snapshot_column(s, i);
    PyObject *name = PyUnicode_DecodeUTF8(c->name, (Py_ssize_t)c->name_len, "strict");
    PyObject *tz = opt_str(c->timezone);
    PyObject *t =
        name && tz
            ? Py_BuildValue(
                  "(OsOOiisKK)", name, snap_type_name(c->type),
                  c->flags & SNAP_NULLABLE ? Py_True : Py_False, tz,
                  c->block == SNAP_NO_BLOCK ? -1 : (int)c->block, (int)c->block_pos,
                  c->type == SNAP_CATEGORY ? snap_type_name(c->code_type) : "",
                  (unsigned long long)c->dict_size, (unsigned long long)c->data_bytes)
            : NULL;
    Py_XDECREF(name);
    Py_XDECREF(tz);
    if (!t) {
      Py_DECREF(list);
      return NULL;
    }
    PyList_SET_ITEM(list, i, t);
  }
  return list;
}

/* blocks() -> list of (type, timezone, nullable, (column indices...)) */
static PyObject *pin_blocks(PyObject *self, PyObject *unused) {
  (void)unused;
  snap_snapshot *s = ((PinObject *)self)->snap;
  uint32_t n = snap_snapshot_nblocks(s);
  PyObject *list = PyList_New(n);
  if (!list) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    const struct snap_block *b = snap_snapshot_block(s, i);
    PyObject *cols = PyTuple_New(b->ncols);
    PyObject *tz = opt_str(b->timezone);
    if (!cols || !tz) {
      Py_XDECREF(cols);
      Py_XDECREF(tz);
      Py_DECREF(list);
      return NULL;
    }
    for (uint32_t k = 0; k < b->ncols; k++)
      PyTuple_SET_ITEM(cols, k, PyLong_FromUnsignedLong(b->columns[k]));
    PyObject *t = Py_BuildValue("(sOON)", snap_type_name(b->type), tz,
                                b->flags & SNAP_NULLABLE ? Py_True : Py_False, cols);
    Py_DECREF(tz);
    if (!t) {
      Py_DECREF(list);
      return NULL;
    }
    PyList_SET_ITEM(list, i, t);
  }
  return list;
}

static const char *const buf_kinds[] = {"values", "validity", "offsets", "data", NULL};

static int kind_index(const char *kind) {
  for (int k = 0; buf_kinds[k]; k++)
    if (!strcmp(buf_kinds[k], kind)) return k;
  return -1;
}

/* The Buffer @p kind of a version's view: "segment" (all of it: @p seg,
 * @p seglen), "block" (@p b) or values/validity/offsets/data of column @p c;
 * @p b / @p c are NULL when @p idx is out of range. */
static PyObject *view_buffer(PyObject *self, const char *kind, unsigned idx,
                             const void *seg, size_t seglen, const struct snap_block *b,
                             const struct snap_column *c, int writable) {
  if (!strcmp(kind, "segment")) return buffer_new(self, seg, seglen, writable);
  if (!strcmp(kind, "block")) {
    if (!b) return PyErr_Format(PyExc_IndexError, "block %u out of range", idx);
    return buffer_new(self, b->data, b->data_bytes, writable);
  }
  int k = kind_index(kind);
  if (k < 0) return PyErr_Format(PyExc_ValueError, "unknown buffer kind %s", kind);
  if (!c) return PyErr_Format(PyExc_IndexError, "column %u out of range", idx);
  const void *ptrs[] = {c->values, c->validity, c->offsets, c->data};
  const uint64_t lens[] = {c->values_bytes, c->validity_bytes, c->offsets_bytes,
                           c->data_bytes};
  /* an absent buffer (no bytes: all-empty strings, 0 rows) is an empty buffer,
   * so callers never special-case None */
  return buffer_new(self, ptrs[k], ptrs[k] ? lens[k] : 0, writable);
}

/* buffer(kind, index): kind "block" (index = block) or values/validity/
 * offsets/data (index = column) or "segment" (the whole mapping). */
static PyObject *pin_buffer(PyObject *self, PyObject *args) {
  const char *kind;
  unsigned int idx = 0;
  if (!PyArg_ParseTuple(args, "s|I", &kind, &idx)) return NULL;
  snap_snapshot *s = ((PinObject *)self)->snap;
  size_t len;
  const void *seg = snap_snapshot_segment(s, &len);
  return view_buffer(self, kind, idx, seg, len, snap_snapshot_block(s, idx),
                     snap_snapshot_column(s, idx), 0);
}

static PyObject *pin_verify(PyObject *self, PyObject *unused) {
  (void)unused;
  struct snap_error err = {0};
  int rc;
  snap_snapshot *s = ((PinObject *)self)->snap;
  Py_BEGIN_ALLOW_THREADS
  rc = snap_snapshot_verify(s, &err);
  Py_END_ALLOW_THREADS
  if (rc) return raise_status(rc, &err);
  Py_RETURN_NONE;
}

/* ------------------------------------------- Arrow PyCapsule interface */

static void schema_capsule_free(PyObject *cap) {
  struct ArrowSchema *s = PyCapsule_GetPointer(cap, "arrow_schema");
  if (s && s->release) s->release(s);
  free(s);
}

static void array_capsule_free(PyObject *cap) {
  struct ArrowArray *a = PyCapsule_GetPointer(cap, "arrow_array");
  if (a && a->release) a->release(a);
  free(a);
}

static void stream_capsule_free(PyObject *cap) {
  struct ArrowArrayStream *s = PyCapsule_GetPointer(cap, "arrow_array_stream");
  if (s && s->release) s->release(s);
  free(s);
}

static PyObject *schema_capsule(struct ArrowSchema *s) {
  PyObject *cap = PyCapsule_New(s, "arrow_schema", schema_capsule_free);
  if (!cap) {
    s->release(s);
    free(s);
  }
  return cap;
}

/* __arrow_c_schema__(): the struct schema of the whole version. */
static PyObject *pin_arrow_schema(PyObject *self, PyObject *unused) {
  (void)unused;
  snap_snapshot *snap = ((PinObject *)self)->snap;
  struct ArrowArrayStream st;
  struct snap_error err = {0};
  struct ArrowSchema *s = calloc(1, sizeof *s);
  if (!s) return PyErr_NoMemory();
  int rc = snap_arrow_export_stream(snap, &st, &err);
  if (!rc) {
    rc = -st.get_schema(&st, s);
    st.release(&st);
  }
  if (rc) {
    free(s);
    return raise_status(rc, &err);
  }
  return schema_capsule(s);
}

/* __arrow_c_array__(requested_schema=None): (schema, array) capsules of one
 * record batch; the array holds its own pin until its consumer releases it. */
static PyObject *pin_arrow_array(PyObject *self, PyObject *args) {
  PyObject *requested = Py_None; /* a producer may ignore the request */
  if (!PyArg_ParseTuple(args, "|O", &requested)) return NULL;
  snap_snapshot *snap = ((PinObject *)self)->snap;
  struct ArrowSchema *s = calloc(1, sizeof *s);
  struct ArrowArray *a = calloc(1, sizeof *a);
  struct snap_error err = {0};
  if (!s || !a) {
    free(s);
    free(a);
    return PyErr_NoMemory();
  }
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = snap_arrow_export(snap, s, a, &err);
  Py_END_ALLOW_THREADS
  if (rc) {
    free(s);
    free(a);
    return raise_status(rc, &err);
  }
  PyObject *sc = schema_capsule(s);
  if (!sc) {
    a->release(a);
    free(a);
    return NULL;
  }
  PyObject *ac = PyCapsule_New(a, "arrow_array", array_capsule_free);
  if (!ac) {
    a->release(a);
    free(a);
    Py_DECREF(sc);
    return NULL;
  }
  return Py_BuildValue("(NN)", sc, ac);
}

/* __arrow_c_stream__(requested_schema=None): a stream of one record batch. */
static PyObject *pin_arrow_stream(PyObject *self, PyObject *args) {
  PyObject *requested = Py_None;
  if (!PyArg_ParseTuple(args, "|O", &requested)) return NULL;
  snap_snapshot *snap = ((PinObject *)self)->snap;
  struct ArrowArrayStream *st = calloc(1, sizeof *st);
  struct snap_error err = {0};
  if (!st) return PyErr_NoMemory();
  int rc = snap_arrow_export_stream(snap, st, &err);
  if (rc) {
    free(st);
    return raise_status(rc, &err);
  }
  PyObject *cap = PyCapsule_New(st, "arrow_array_stream", stream_capsule_free);
  if (!cap) {
    st->release(st);
    free(st);
  }
  return cap;
}

static PyMethodDef pin_methods[] = {
    {"__arrow_c_schema__", pin_arrow_schema, METH_NOARGS, "Arrow PyCapsule schema."},
    {"__arrow_c_array__", pin_arrow_array, METH_VARARGS, "Arrow PyCapsule array."},
    {"__arrow_c_stream__", pin_arrow_stream, METH_VARARGS, "Arrow PyCapsule stream."},
    {"columns", pin_columns, METH_NOARGS, "Column descriptions."},
    {"blocks", pin_blocks, METH_NOARGS, "Dtype blocks."},
    {"buffer", pin_buffer, METH_VARARGS, "buffer(kind, index) -> Buffer."},
    {"verify", pin_verify, METH_NOARGS, "Recompute the data checksum."},
    {NULL}};

static PyGetSetDef pin_getset[] = {{"dataset", pin_get, NULL, NULL, (void *)0},
                                   {"version", pin_get, NULL, NULL, (void *)1},
                                   {"nrows", pin_get, NULL, NULL, (void *)2},
                                   {"ncols", pin_get, NULL, NULL, (void *)3},
                                   {"nblocks", pin_get, NULL, NULL, (void *)4},
                                   {"metadata", pin_get, NULL, NULL, (void *)5},
                                   {"path", pin_get, NULL, NULL, (void *)6},
                                   {"created_ns", pin_get, NULL, NULL, (void *)7},
                                   {"pieces", pin_get, NULL, NULL, (void *)8},
                                   {NULL}};

static PyTypeObject PinType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "libsnap._core.Pin",
    .tp_basicsize = sizeof(PinObject),
    .tp_dealloc = pin_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = pin_methods,
    .tp_getset = pin_getset,
    .tp_doc = "One pin on one version of a dataset; released when unreferenced.",
};

/* ------------------------------------------------------------------ Edit */

/* An Edit is a Pin of its base (columns(), blocks(), metadata, ... describe
 * it) whose buffers are the edit's private, writable, copy-on-write view. */
static void edit_dealloc(PyObject *self) {
  EditObject *e = (EditObject *)self;
  snap_edit *ed = e->ed;
  e->ed = NULL;
  if (ed) {
    Py_BEGIN_ALLOW_THREADS
    snap_edit_free(ed);
    Py_END_ALLOW_THREADS
  }
  pin_dealloc(self); /* the base reference, the store */
}

/* buffer(kind, index): as Pin.buffer, into the writable view. */
static PyObject *edit_buffer(PyObject *self, PyObject *args) {
  const char *kind;
  unsigned int idx = 0;
  if (!PyArg_ParseTuple(args, "s|I", &kind, &idx)) return NULL;
  snap_edit *ed = ((EditObject *)self)->ed;
  size_t len;
  void *view = snap_edit_view(ed, &len);
  return view_buffer(self, kind, idx, view, len, snap_edit_block(ed, idx),
                     snap_edit_column(ed, idx), 1);
}

/* Run @p fn on the edit without the GIL: its number, or the error raised. */
static PyObject *edit_call(PyObject *self,
                           int (*fn)(snap_edit *, uint64_t *, struct snap_error *)) {
  uint64_t n = 0;
  struct snap_error err = {0};
  int rc;
  snap_edit *ed = ((EditObject *)self)->ed;
  Py_BEGIN_ALLOW_THREADS
  rc = fn(ed, &n, &err);
  Py_END_ALLOW_THREADS
  if (rc) return raise_status(rc, &err);
  return PyLong_FromUnsignedLongLong(n);
}

static int written_of(snap_edit *ed, uint64_t *pages, struct snap_error *err) {
  return snap_edit_written(ed, pages, err);
}

/* written() -> pages of the view's data written so far (private memory). */
static PyObject *edit_written(PyObject *self, PyObject *unused) {
  (void)unused;
  return edit_call(self, written_of);
}

/* commit() -> version: publish the view as it is (snap_edit_commit). */
static PyObject *edit_commit(PyObject *self, PyObject *unused) {
  (void)unused;
  return edit_call(self, snap_edit_commit);
}

static PyObject *edit_base(PyObject *self, void *closure) {
  (void)closure;
  return PyLong_FromUnsignedLongLong(snap_edit_base(((EditObject *)self)->ed));
}

static PyMethodDef edit_methods[] = {
    {"buffer", edit_buffer, METH_VARARGS, "buffer(kind, index) -> writable Buffer."},
    {"written", edit_written, METH_NOARGS, "Pages of the view written so far."},
    {"commit", edit_commit, METH_NOARGS,
     "Publish the view as it is; returns the version."},
    {NULL}};

static PyGetSetDef edit_getset[] = {{"base", edit_base, NULL, NULL, NULL}, {NULL}};

static PyTypeObject EditType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "libsnap._core.Edit",
    .tp_basicsize = sizeof(EditObject),
    .tp_dealloc = edit_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = edit_methods,
    .tp_getset = edit_getset,
    .tp_base = &PinType,
    .tp_doc =
        "An edit in progress: a private, writable, copy-on-write view of a version.",
};

/* --------------------------------------------------------------- Publish */

static void sources_release(PublishObject *p) {
  for (size_t i = 0; i < p->nsources; i++) PyBuffer_Release(&p->sources[i]);
  PyMem_Free(p->sources);
  p->sources = NULL;
  p->nsources = p->capsources = 0;
  Py_CLEAR(p->edit);
}

static void publish_dealloc(PyObject *self) {
  PublishObject *p = (PublishObject *)self;
  if (p->pub) snap_publish_abort(p->pub);
  sources_release(p);
  if (p->kept) munmap(p->kept, p->kept_len); /* the last Buffer over it is gone */
  Py_XDECREF(p->store);
  PyObject_Free(self);
}

/* buffer(kind, column): a writable view of one buffer of a column, sized from
 * the library's own plan of the segment (never from the caller). */
static PyObject *publish_buffer(PyObject *self, PyObject *args) {
  PublishObject *p = (PublishObject *)self;
  const char *kind;
  unsigned int idx;
  if (!PyArg_ParseTuple(args, "sI", &kind, &idx)) return NULL;
  if (!p->pub) return PyErr_Format(PyExc_ValueError, "publish already finished");
  int k = kind_index(kind);
  if (k < 0) return PyErr_Format(PyExc_ValueError, "unknown buffer kind %s", kind);
  if (idx >= p->ncols)
    return PyErr_Format(PyExc_IndexError, "column %u out of range", idx);
  struct snap_fill f;
  struct snap_error err = {0};
  int rc = snap_publish_fill(p->pub, idx, &f, &err); /* allocates the column */
  if (rc) return raise_status(rc, &err);
  void *ptrs[] = {f.values, f.validity, f.offsets, f.data};
  const uint64_t lens[] = {f.values_bytes, f.validity_bytes, f.offsets_bytes,
                           f.data_bytes};
  uint64_t len = ptrs[k] ? lens[k] : 0;
  return buffer_new(self, ptrs[k], len, 1); /* absent: an empty buffer, as for pins */
}

/* A C-contiguous view of @p obj, held by the publish until commit or abort
 * (source_keep) or given back (PyBuffer_Release) when the library refused it.
 * NULL with an exception set on failure. */
static Py_buffer *source_view(PublishObject *p, PyObject *obj) {
  if (p->nsources == p->capsources) {
    size_t cap = p->capsources ? 2 * p->capsources : 16;
    Py_buffer *nb = PyMem_Realloc(p->sources, cap * sizeof *nb);
    if (!nb) return (Py_buffer *)PyErr_NoMemory();
    p->sources = nb;
    p->capsources = cap;
  }
  Py_buffer *v = &p->sources[p->nsources];
  return PyObject_GetBuffer(obj, v, PyBUF_C_CONTIGUOUS) ? NULL : v;
}

/* The library took the view from source_view(): keep it; else release it and
 * raise. */
static PyObject *source_keep(PublishObject *p, Py_buffer *v, int rc,
                             struct snap_error *err) {
  if (rc) {
    PyBuffer_Release(v);
    return raise_status(rc, err);
  }
  p->nsources++;
  Py_RETURN_NONE;
}

/* copy(kind, column, array): the buffer's bytes come from @p array at commit
 * (snap_publish_copy): only chunks that differ from the current version are
 * written. The array is held until commit or abort. */
static PyObject *publish_copy(PyObject *self, PyObject *args) {
  PublishObject *p = (PublishObject *)self;
  const char *kind;
  unsigned int idx;
  PyObject *obj;
  if (!PyArg_ParseTuple(args, "sIO", &kind, &idx, &obj)) return NULL;
  if (!p->pub) return PyErr_Format(PyExc_ValueError, "publish already finished");
  int k = kind_index(kind);
  if (k < 0) return PyErr_Format(PyExc_ValueError, "unknown buffer kind %s", kind);
  const struct snap_column *c = snap_publish_column(p->pub, idx);
  if (!c) return PyErr_Format(PyExc_IndexError, "column %u out of range", idx);
  const uint64_t lens[] = {c->values_bytes, c->validity_bytes, c->offsets_bytes,
                           c->data_bytes};
  Py_buffer *v = source_view(p, obj);
  if (!v) return NULL;
  if ((uint64_t)v->len != lens[k]) {
    PyBuffer_Release(v);
    return PyErr_Format(PyExc_ValueError,
                        "column %u %s: %zd bytes given, the buffer has %llu", idx, kind,
                        v->len, (unsigned long long)lens[k]);
  }
  struct snap_error err = {0};
  int rc =
      snap_publish_copy(p->pub, idx, (enum snap_buffer)k, v->len ? v->buf : NULL, &err);
  return source_keep(p, v, rc, &err);
}

/* copy_rows(column, first_row, array): rows of a fixed-width column's values,
 * read at commit (snap_publish_copy_rows); the array is held until then. */
static PyObject *publish_copy_rows(PyObject *self, PyObject *args) {
  PublishObject *p = (PublishObject *)self;
  unsigned int idx;
  unsigned long long first;
  PyObject *obj;
  if (!PyArg_ParseTuple(args, "IKO", &idx, &first, &obj)) return NULL;
  if (!p->pub) return PyErr_Format(PyExc_ValueError, "publish already finished");
  const struct snap_column *c = snap_publish_column(p->pub, idx);
  if (!c) return PyErr_Format(PyExc_IndexError, "column %u out of range", idx);
  size_t sz = snap_type_size(c->type);
  if (!sz) return PyErr_Format(PyExc_ValueError, "column %u is not fixed-width", idx);
  Py_buffer *v = source_view(p, obj);
  if (!v) return NULL;
  if (v->len % (Py_ssize_t)sz) {
    PyBuffer_Release(v);
    return PyErr_Format(PyExc_ValueError,
                        "column %u: %zd bytes is not whole values of %zu", idx, v->len,
                        sz);
  }
  struct snap_error err = {0};
  int rc = snap_publish_copy_rows(p->pub, idx, first, (uint64_t)v->len / sz,
                                  v->len ? v->buf : NULL, &err);
  return source_keep(p, v, rc, &err);
}

/* full(): share nothing with the current version (SNAP_PUBLISH_FULL). */
static PyObject *publish_full(PyObject *self, PyObject *unused) {
  (void)unused;
  PublishObject *p = (PublishObject *)self;
  if (!p->pub) return PyErr_Format(PyExc_ValueError, "publish already finished");
  struct snap_error err = {0};
  int rc = snap_publish_set_flags(p->pub, SNAP_PUBLISH_FULL, &err);
  if (rc) return raise_status(rc, &err);
  Py_RETURN_NONE;
}

/* keep_view(): buffers stay readable after the commit or abort
 * (SNAP_PUBLISH_KEEP_VIEW); this object unmaps them when it goes, which is
 * after the last Buffer (each holds it). */
static PyObject *publish_keep_view(PyObject *self, PyObject *unused) {
  (void)unused;
  PublishObject *p = (PublishObject *)self;
  if (!p->pub) return PyErr_Format(PyExc_ValueError, "publish already finished");
  struct snap_error err = {0};
  int rc = snap_publish_set_flags(p->pub, SNAP_PUBLISH_KEEP_VIEW, &err);
  if (rc) return raise_status(rc, &err);
  p->kept = snap_publish_view(p->pub, &p->kept_len);
  Py_RETURN_NONE;
}

/* block(b) -> (Buffer, column_stride, (columns...)): the writable matrix of
 * block b (allocated now), its columns in block order, a column_stride apart. */
static PyObject *publish_block(PyObject *self, PyObject *args) {
  PublishObject *p = (PublishObject *)self;
  unsigned int idx;
  if (!PyArg_ParseTuple(args, "I", &idx)) return NULL;
  if (!p->pub) return PyErr_Format(PyExc_ValueError, "publish already finished");
  const struct snap_block *b = snap_publish_block_plan(p->pub, idx);
  if (!b) return PyErr_Format(PyExc_IndexError, "block %u out of range", idx);
  errno = 0;
  void *data = snap_publish_block(p->pub, idx); /* allocates it */
  if (!data && b->data_bytes) {
    int e = errno ? errno : ENOMEM;
    struct snap_error err = {0};
    snprintf(err.message, sizeof err.message,
             "allocating block %u of the new version: %s", idx, strerror(e));
    return raise_status(-e, &err);
  }
  PyObject *cols = PyTuple_New(b->ncols);
  if (!cols) return NULL;
  for (uint32_t k = 0; k < b->ncols; k++) {
    PyObject *n = PyLong_FromUnsignedLong(b->columns[k]);
    if (!n) {
      Py_DECREF(cols);
      return NULL;
    }
    PyTuple_SET_ITEM(cols, k, n);
  }
  PyObject *buf = buffer_new(self, data, data ? b->data_bytes : 0, 1);
  if (!buf) {
    Py_DECREF(cols);
    return NULL;
  }
  return Py_BuildValue("(NKN)", buf, (unsigned long long)b->column_stride, cols);
}

/* edit(e): base the publish on Edit e (snap_publish_set_edit): sources in its
 * view where no page was written are shared unread; the flip refuses with
 * Conflict unless e's base is still current. After the last write to e. */
static PyObject *publish_edit(PyObject *self, PyObject *args) {
  PublishObject *p = (PublishObject *)self;
  PyObject *e;
  if (!PyArg_ParseTuple(args, "O!", &EditType, &e)) return NULL;
  if (!p->pub) return PyErr_Format(PyExc_ValueError, "publish already finished");
  struct snap_error err = {0};
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = snap_publish_set_edit(p->pub, ((EditObject *)e)->ed, &err);
  Py_END_ALLOW_THREADS
  if (rc) return raise_status(rc, &err);
  Py_INCREF(e);
  Py_XSETREF(p->edit, e);
  Py_RETURN_NONE;
}

/* column(i) -> (type, code_type, block, block_pos) as planned */
static PyObject *publish_column(PyObject *self, PyObject *args) {
  PublishObject *p = (PublishObject *)self;
  unsigned int idx;
  if (!PyArg_ParseTuple(args, "I", &idx)) return NULL;
  if (!p->pub) return PyErr_Format(PyExc_ValueError, "publish already finished");
  const struct snap_column *c = snap_publish_column(p->pub, idx);
  if (!c) return PyErr_Format(PyExc_IndexError, "column %u out of range", idx);
  return Py_BuildValue("(ssii)", snap_type_name(c->type),
                       c->type == SNAP_CATEGORY ? snap_type_name(c->code_type) : "",
                       c->block == SNAP_NO_BLOCK ? -1 : (int)c->block, (int)c->block_pos);
}

static PyObject *publish_commit(PyObject *self, PyObject *unused) {
  (void)unused;
  PublishObject *p = (PublishObject *)self;
  if (!p->pub) return PyErr_Format(PyExc_ValueError, "publish already finished");
  if (p->exports && !p->kept)
    return PyErr_Format(PyExc_BufferError,
                        "%zd buffer export(s) of this publish are still alive: delete "
                        "the arrays that view it before commit",
                        p->exports);
  snap_publish *pub = p->pub;
  p->pub = NULL;
  uint64_t version = 0;
  struct snap_error err = {0};
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = snap_publish_commit(pub, &version, &err);
  Py_END_ALLOW_THREADS
  sources_release(p);
  if (rc) return raise_status(rc, &err);
  return PyLong_FromUnsignedLongLong(version);
}

static PyObject *publish_abort(PyObject *self, PyObject *unused) {
  (void)unused;
  PublishObject *p = (PublishObject *)self;
  if (p->pub && p->exports && !p->kept)
    return PyErr_Format(PyExc_BufferError,
                        "%zd buffer export(s) of this publish are still alive",
                        p->exports);
  snap_publish_abort(p->pub);
  p->pub = NULL;
  sources_release(p);
  Py_RETURN_NONE;
}

static PyObject *publish_version(PyObject *self, void *closure) {
  PublishObject *p = (PublishObject *)self;
  if (!p->pub) Py_RETURN_NONE;
  return PyLong_FromUnsignedLongLong(closure ? snap_publish_nrows(p->pub)
                                             : snap_publish_version(p->pub));
}

static PyMethodDef publish_methods[] = {
    {"buffer", publish_buffer, METH_VARARGS, "buffer(kind, column) -> writable Buffer."},
    {"copy", publish_copy, METH_VARARGS,
     "copy(kind, column, array): the buffer's bytes, read at commit."},
    {"full", publish_full, METH_NOARGS, "Share nothing with the current version."},
    {"keep_view", publish_keep_view, METH_NOARGS,
     "Buffers stay readable after the commit (SNAP_PUBLISH_KEEP_VIEW)."},
    {"block", publish_block, METH_VARARGS,
     "block(b) -> (writable Buffer, column_stride, columns)."},
    {"edit", publish_edit, METH_VARARGS,
     "edit(e): base the publish on Edit e (after its last write)."},
    {"copy_rows", publish_copy_rows, METH_VARARGS,
     "copy_rows(column, first_row, array): rows of a fixed-width column."},
    {"column", publish_column, METH_VARARGS,
     "column(i) -> (type, code_type, block, pos)"},
    {"commit", publish_commit, METH_NOARGS,
     "Validate, seal and flip; returns the version."},
    {"abort", publish_abort, METH_NOARGS, "Abandon the publish."},
    {NULL}};

static PyGetSetDef publish_getset[] = {{"version", publish_version, NULL, NULL, NULL},
                                       {"nrows", publish_version, NULL, NULL, (void *)1},
                                       {NULL}};

static PyTypeObject PublishType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "libsnap._core.Publish",
    .tp_basicsize = sizeof(PublishObject),
    .tp_dealloc = publish_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = publish_methods,
    .tp_getset = publish_getset,
    .tp_doc = "A publish in progress.",
};

/* ----------------------------------------------------------------- Store */

static int store_init(PyObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"path", "create", "readonly", NULL};
  PyObject *path_obj = Py_None;
  int create = 0, readonly = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|Opp", kwlist, &path_obj, &create,
                                   &readonly))
    return -1;
  PyObject *bytes = NULL;
  const char *path = NULL;
  if (path_obj != Py_None) {
    if (!PyUnicode_FSConverter(path_obj, &bytes)) return -1;
    path = PyBytes_AS_STRING(bytes);
  }
  StoreObject *s = (StoreObject *)self;
  struct snap_error err = {0};
  unsigned flags = (create ? SNAP_CREATE : 0) | (readonly ? SNAP_RDONLY : 0);
  int rc;
  snap_store *st = NULL;
  Py_BEGIN_ALLOW_THREADS
  rc = snap_store_open(path, flags, &st, &err);
  Py_END_ALLOW_THREADS
  Py_XDECREF(bytes);
  if (rc) {
    raise_status(rc, &err);
    return -1;
  }
  if (s->store) snap_store_close(s->store);
  s->store = st;
  return 0;
}

static void store_dealloc(PyObject *self) {
  StoreObject *s = (StoreObject *)self;
  if (s->store) snap_store_close(s->store);
  Py_TYPE(self)->tp_free(self);
}

static PyObject *store_close(PyObject *self, PyObject *unused) {
  (void)unused;
  StoreObject *s = (StoreObject *)self;
  snap_store *st = s->store;
  s->store = NULL;
  if (st) {
    Py_BEGIN_ALLOW_THREADS
    snap_store_close(st);
    Py_END_ALLOW_THREADS
  }
  Py_RETURN_NONE;
}

static PyObject *store_pin(PyObject *self, PyObject *args) {
  StoreObject *s = (StoreObject *)self;
  const char *dataset;
  unsigned long long version = 0;
  PyObject *vobj = NULL; /* 0 or absent: the current version */
  if (!PyArg_ParseTuple(args, "s|O", &dataset, &vobj)) return NULL;
  if (vobj && arg_uint(vobj, "version", 0, UINT64_MAX, &version)) return NULL;
  if (!s->store) return store_closed();
  snap_snapshot *snap = NULL;
  struct snap_error err = {0};
  int rc;
  /* The fast path (no system call, no lock) takes ~15 ns: not worth dropping
   * the GIL for. The slow path runs an LMDB transaction, maps and validates a
   * segment, and may wait on the store's lock: once, without the GIL. */
  rc = version ? -EAGAIN : snap_pin_cached(s->store, dataset, &snap);
  if (rc == -EAGAIN) {
    Py_BEGIN_ALLOW_THREADS
    rc = version ? snap_pin_version(s->store, dataset, version, &snap, &err)
                 : snap_pin(s->store, dataset, &snap, &err);
    Py_END_ALLOW_THREADS
  }
  if (rc) return raise_status(rc, &err);
  PinObject *p = PyObject_New(PinObject, &PinType);
  if (!p) {
    snap_unpin(snap);
    return NULL;
  }
  p->snap = snap;
  Py_INCREF(self);
  p->store = self;
  return (PyObject *)p;
}

static PyObject *store_begin(PyObject *self, PyObject *args) {
  /* begin(dataset, nrows, fields, metadata) where fields is a list of
   * (name, type_code, nullable, timezone or None, data_bytes, dict_size, code_type) */
  StoreObject *s = (StoreObject *)self;
  const char *dataset;
  unsigned long long nrows;
  PyObject *fields, *nrows_obj;
  Py_buffer meta;
  if (!PyArg_ParseTuple(args, "sOOy*", &dataset, &nrows_obj, &fields, &meta)) return NULL;
  if (arg_uint(nrows_obj, "nrows", 0, INT64_MAX, &nrows)) {
    PyBuffer_Release(&meta);
    return NULL;
  }
  if (!s->store) {
    PyBuffer_Release(&meta);
    return store_closed();
  }
  PyObject *seq = PySequence_Fast(fields, "fields must be a sequence");
  if (!seq) {
    PyBuffer_Release(&meta);
    return NULL;
  }
  Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  struct snap_field *f = calloc(n ? (size_t)n : 1, sizeof *f);
  PyObject *result = NULL;
  if (!f) {
    PyErr_NoMemory();
    goto out;
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
    const char *name, *tz = NULL;
    int type, nullable, code_type;
    unsigned long long data_bytes, dict_size;
    PyObject *db, *ds;
    if (!PyArg_ParseTuple(item, "sipzOOi", &name, &type, &nullable, &tz, &db, &ds,
                          &code_type) ||
        arg_uint(db, "data_bytes", 0, INT64_MAX, &data_bytes) ||
        arg_uint(ds, "dict_size", 0, INT64_MAX, &dict_size))
      goto out;
    f[i] = (struct snap_field){.name = name,
                               .type = (enum snap_type)type,
                               .flags = nullable ? SNAP_NULLABLE : 0,
                               .timezone = tz,
                               .data_bytes = data_bytes,
                               .dict_size = dict_size,
                               .code_type = (enum snap_type)code_type};
  }
  struct snap_schema schema = {nrows, (uint32_t)n, f, meta.buf, (size_t)meta.len};
  snap_publish *pub = NULL;
  struct snap_error err = {0};
  int rc;
  Py_BEGIN_ALLOW_THREADS
  /* keep the room a current version has for appended rows: its chunks stay
   * shareable (this module never fills a block as one contiguous matrix) */
  rc = snap_publish_begin_ex(s->store, dataset, &schema, SNAP_PUBLISH_KEEP_ROOM, &pub,
                             &err);
  Py_END_ALLOW_THREADS
  if (rc) {
    raise_status(rc, &err);
    goto out;
  }
  PublishObject *p = PyObject_New(PublishObject, &PublishType);
  if (!p) {
    snap_publish_abort(pub);
    goto out;
  }
  p->pub = pub;
  p->exports = 0;
  p->ncols = (uint32_t)n;
  p->sources = NULL;
  p->nsources = p->capsources = 0;
  p->edit = NULL;
  p->kept = NULL;
  p->kept_len = 0;
  Py_INCREF(self);
  p->store = self;
  result = (PyObject *)p;
out:
  free(f);
  Py_DECREF(seq);
  PyBuffer_Release(&meta);
  return result;
}

/* edit(dataset) -> Edit of the current version. */
static PyObject *store_edit(PyObject *self, PyObject *args) {
  StoreObject *s = (StoreObject *)self;
  const char *dataset;
  if (!PyArg_ParseTuple(args, "s", &dataset)) return NULL;
  if (!s->store) return store_closed();
  snap_edit *ed = NULL;
  struct snap_error err = {0};
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = snap_edit_begin(s->store, dataset, &ed, &err);
  Py_END_ALLOW_THREADS
  if (rc) return raise_status(rc, &err);
  EditObject *e = PyObject_New(EditObject, &EditType);
  if (!e) {
    snap_edit_free(ed);
    return NULL;
  }
  e->ed = ed;
  e->pin.snap = snap_snapshot_ref(snap_edit_snapshot(ed));
  Py_INCREF(self);
  e->pin.store = self;
  return (PyObject *)e;
}

/* append_begin(dataset, nrows, metadata or None) -> Publish: the current
 * version plus nrows rows, given with Publish.copy_rows(). */
static PyObject *store_append_begin(PyObject *self, PyObject *args) {
  StoreObject *s = (StoreObject *)self;
  const char *dataset;
  PyObject *nrows_obj, *meta_obj;
  unsigned long long nrows;
  if (!PyArg_ParseTuple(args, "sOO", &dataset, &nrows_obj, &meta_obj)) return NULL;
  if (arg_uint(nrows_obj, "nrows", 0, INT64_MAX, &nrows)) return NULL;
  if (!s->store) return store_closed();
  Py_buffer meta = {0};
  if (meta_obj != Py_None && PyObject_GetBuffer(meta_obj, &meta, PyBUF_SIMPLE))
    return NULL;
  snap_publish *pub = NULL;
  struct snap_error err = {0};
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc =
      snap_publish_append(s->store, dataset, nrows, meta_obj != Py_None ? meta.buf : NULL,
                          meta_obj != Py_None ? (size_t)meta.len : 0, &pub, &err);
  Py_END_ALLOW_THREADS
  if (meta_obj != Py_None) PyBuffer_Release(&meta);
  if (rc) return raise_status(rc, &err);
  PublishObject *p = PyObject_New(PublishObject, &PublishType);
  if (!p) {
    snap_publish_abort(pub);
    return NULL;
  }
  p->pub = pub;
  p->exports = 0;
  p->ncols = 0;
  while (snap_publish_column(pub, p->ncols)) p->ncols++;
  p->sources = NULL;
  p->nsources = p->capsources = 0;
  p->edit = NULL;
  p->kept = NULL;
  p->kept_len = 0;
  Py_INCREF(self);
  p->store = self;
  return (PyObject *)p;
}

static PyObject *version_dict(const struct snap_version_info *v) {
  uint64_t shared = v->shared_bytes;
  return Py_BuildValue(
      "{sKsssKsIsKsKsKsi}", "version", (unsigned long long)v->version, "state",
      snap_state_name(v->state), "nrows", (unsigned long long)v->nrows, "ncols", v->ncols,
      "nbytes", (unsigned long long)v->bytes, "shared", (unsigned long long)shared,
      "created_ns", (unsigned long long)v->created_ns, "pinned", (int)v->holders);
}

static PyObject *store_versions(PyObject *self, PyObject *args) {
  StoreObject *s = (StoreObject *)self;
  const char *dataset;
  if (!PyArg_ParseTuple(args, "s", &dataset)) return NULL;
  if (!s->store) return store_closed();
  struct snap_version_info *vi = NULL;
  size_t n = 0;
  struct snap_error err = {0};
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = snap_version_list(s->store, dataset, &vi, &n, &err);
  Py_END_ALLOW_THREADS
  if (rc) return raise_status(rc, &err);
  PyObject *list = PyList_New((Py_ssize_t)n);
  for (size_t i = 0; list && i < n; i++) {
    PyObject *d = version_dict(&vi[i]);
    if (!d) {
      Py_CLEAR(list);
      break;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)i, d);
  }
  snap_free(vi);
  return list;
}

static PyObject *store_datasets(PyObject *self, PyObject *unused) {
  (void)unused;
  StoreObject *s = (StoreObject *)self;
  if (!s->store) return store_closed();
  struct snap_dataset_info *di = NULL;
  size_t n = 0;
  struct snap_error err = {0};
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = snap_dataset_list(s->store, &di, &n, &err);
  Py_END_ALLOW_THREADS
  if (rc) return raise_status(rc, &err);
  PyObject *list = PyList_New((Py_ssize_t)n);
  for (size_t i = 0; list && i < n; i++) {
    PyObject *d = Py_BuildValue("{sssKsKsIsIsK}", "name", di[i].name, "current",
                                (unsigned long long)di[i].current, "next_version",
                                (unsigned long long)di[i].next_version, "keep",
                                di[i].keep, "nversions", di[i].nversions, "nbytes",
                                (unsigned long long)di[i].bytes);
    if (!d) {
      Py_CLEAR(list);
      break;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)i, d);
  }
  snap_free(di);
  return list;
}

static PyObject *store_current_version(PyObject *self, PyObject *args) {
  StoreObject *s = (StoreObject *)self;
  const char *dataset;
  if (!PyArg_ParseTuple(args, "s", &dataset)) return NULL;
  if (!s->store) return store_closed();
  uint64_t v;
  struct snap_error err = {0};
  int rc = snap_current_version(s->store, dataset, &v, &err);
  if (rc) return raise_status(rc, &err);
  return PyLong_FromUnsignedLongLong(v);
}

static void gc_item(const struct snap_gc_item *item, void *arg) {
  PyObject *list = arg;
  /* called with the GIL held: gc runs under it, see store_gc */
  PyObject *d = Py_BuildValue("{sssKsKsOsi}", "dataset", item->dataset, "version",
                              (unsigned long long)item->version, "nbytes",
                              (unsigned long long)item->bytes, "freed",
                              item->freed ? Py_True : Py_False, "pinned", item->holders);
  if (d) {
    PyList_Append(list, d);
    Py_DECREF(d);
  }
}

static PyObject *store_gc(PyObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"dataset", "dry_run", NULL};
  StoreObject *s = (StoreObject *)self;
  const char *dataset = NULL;
  int dry = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|zp", kwlist, &dataset, &dry)) return NULL;
  if (!s->store) return store_closed();
  PyObject *items = PyList_New(0);
  if (!items) return NULL;
  struct snap_gc_stats st;
  struct snap_error err = {0};
  /* gc does not block on pins (LOCK_NB), so it runs with the GIL held and
   * the callback may build Python objects directly. */
  int rc =
      snap_gc(s->store, dataset, dry ? SNAP_GC_DRY_RUN : 0, gc_item, items, &st, &err);
  if (rc) {
    Py_DECREF(items);
    return raise_status(rc, &err);
  }
  return Py_BuildValue("{sKsKsKsKsKsN}", "freed_versions",
                       (unsigned long long)st.freed_versions, "freed_bytes",
                       (unsigned long long)st.freed_bytes, "draining_versions",
                       (unsigned long long)st.draining_versions, "draining_bytes",
                       (unsigned long long)st.draining_bytes, "lending_versions",
                       (unsigned long long)st.lending_versions, "items", items);
}

static PyObject *store_rollback(PyObject *self, PyObject *args) {
  StoreObject *s = (StoreObject *)self;
  const char *dataset;
  unsigned long long version;
  PyObject *vobj;
  if (!PyArg_ParseTuple(args, "sO", &dataset, &vobj) ||
      arg_uint(vobj, "version", 1, UINT64_MAX, &version))
    return NULL;
  if (!s->store) return store_closed();
  struct snap_error err = {0};
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = snap_rollback(s->store, dataset, version, &err);
  Py_END_ALLOW_THREADS
  if (rc) return raise_status(rc, &err);
  Py_RETURN_NONE;
}

static PyObject *store_set_keep(PyObject *self, PyObject *args) {
  StoreObject *s = (StoreObject *)self;
  const char *dataset;
  unsigned long long keep;
  PyObject *kobj;
  if (!PyArg_ParseTuple(args, "zO", &dataset, &kobj) ||
      arg_uint(kobj, "keep", 1, UINT32_MAX, &keep))
    return NULL;
  if (!s->store) return store_closed();
  struct snap_error err = {0};
  int rc = snap_store_set_keep(s->store, dataset, (uint32_t)keep, &err);
  if (rc) return raise_status(rc, &err);
  Py_RETURN_NONE;
}

static PyObject *store_set_max_datasets(PyObject *self, PyObject *args) {
  StoreObject *s = (StoreObject *)self;
  unsigned long long max;
  PyObject *mobj;
  if (!PyArg_ParseTuple(args, "O", &mobj) ||
      arg_uint(mobj, "max_datasets", 0, UINT32_MAX, &max))
    return NULL;
  if (!s->store) return store_closed();
  struct snap_error err = {0};
  int rc = snap_store_set_max_datasets(s->store, (uint32_t)max, &err);
  if (rc) return raise_status(rc, &err);
  Py_RETURN_NONE;
}

static PyObject *store_drop(PyObject *self, PyObject *args) {
  StoreObject *s = (StoreObject *)self;
  const char *dataset;
  int force = 0;
  if (!PyArg_ParseTuple(args, "s|p", &dataset, &force)) return NULL;
  if (!s->store) return store_closed();
  struct snap_error err = {0};
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = snap_dataset_drop(s->store, dataset, force ? SNAP_DROP_FORCE : 0, &err);
  Py_END_ALLOW_THREADS
  if (rc) return raise_status(rc, &err);
  Py_RETURN_NONE;
}

static PyObject *store_trim(PyObject *self, PyObject *unused) {
  (void)unused;
  StoreObject *s = (StoreObject *)self;
  if (!s->store) return store_closed();
  Py_BEGIN_ALLOW_THREADS
  snap_store_trim(s->store);
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

static PyObject *store_path(PyObject *self, void *closure) {
  (void)closure;
  StoreObject *s = (StoreObject *)self;
  if (!s->store) return store_closed();
  return PyUnicode_DecodeFSDefault(snap_store_path(s->store));
}

static PyObject *store_is_closed(PyObject *self, void *closure) {
  (void)closure;
  return PyBool_FromLong(((StoreObject *)self)->store == NULL);
}

static PyMethodDef store_methods[] = {
    {"pin", store_pin, METH_VARARGS, "pin(dataset, version=0) -> Pin"},
    {"begin", store_begin, METH_VARARGS, "begin(dataset, nrows, fields, metadata)"},
    {"edit", store_edit, METH_VARARGS, "edit(dataset) -> Edit of the current version"},
    {"append_begin", store_append_begin, METH_VARARGS,
     "append_begin(dataset, nrows, metadata or None) -> Publish"},
    {"versions", store_versions, METH_VARARGS, "versions(dataset) -> list of dict"},
    {"datasets", store_datasets, METH_NOARGS, "datasets() -> list of dict"},
    {"current_version", store_current_version, METH_VARARGS, "current_version(dataset)"},
    {"gc", (PyCFunction)(void (*)(void))store_gc, METH_VARARGS | METH_KEYWORDS,
     "gc(dataset=None, dry_run=False) -> dict"},
    {"rollback", store_rollback, METH_VARARGS, "rollback(dataset, version)"},
    {"set_keep", store_set_keep, METH_VARARGS, "set_keep(dataset or None, keep)"},
    {"set_max_datasets", store_set_max_datasets, METH_VARARGS,
     "set_max_datasets(max): 0 = no limit"},
    {"drop", store_drop, METH_VARARGS, "drop(dataset, force=False)"},
    {"trim", store_trim, METH_NOARGS, "Drop cached mappings of old versions."},
    {"close", store_close, METH_NOARGS, "Close the handle (pins stay valid)."},
    {NULL}};

static PyGetSetDef store_getset[] = {{"path", store_path, NULL, NULL, NULL},
                                     {"closed", store_is_closed, NULL, NULL, NULL},
                                     {NULL}};

static PyTypeObject StoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "libsnap._core.Store",
    .tp_basicsize = sizeof(StoreObject),
    .tp_dealloc = store_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_methods = store_methods,
    .tp_getset = store_getset,
    .tp_init = store_init,
    .tp_new = PyType_GenericNew,
    .tp_doc = "Store(path=None, create=False, readonly=False): a libsnap store handle.",
};

/* ---------------------------------------------------------------- module */

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "libsnap._core",
    .m_doc = "CPython binding of libsnap.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__core(void) {
  PyObject *m = PyModule_Create(&module);
  if (!m) return NULL;
  if (PyType_Ready(&BufferType) || PyType_Ready(&PinType) || PyType_Ready(&EditType) ||
      PyType_Ready(&PublishType) || PyType_Ready(&StoreType))
    return NULL;
  Py_INCREF(&StoreType);
  PyModule_AddObject(m, "Store", (PyObject *)&StoreType);
  Py_INCREF(&PinType);
  PyModule_AddObject(m, "Pin", (PyObject *)&PinType);
  Py_INCREF(&PublishType);
  PyModule_AddObject(m, "Publish", (PyObject *)&PublishType);
  Py_INCREF(&EditType);
  PyModule_AddObject(m, "Edit", (PyObject *)&EditType);
  Py_INCREF(&BufferType);
  PyModule_AddObject(m, "Buffer", (PyObject *)&BufferType);

  ErrorBase = PyErr_NewExceptionWithDoc("libsnap.Error",
                                        "Base of every libsnap error; .code and .name "
                                        "carry the library status.",
                                        NULL, NULL);
  if (!ErrorBase) return NULL;
  Py_INCREF(ErrorBase);
  PyModule_AddObject(m, "Error", ErrorBase);
  PyObject *bases = PyTuple_Pack(2, ErrorBase, PyExc_OSError);
  OSErrorClass = bases ? PyErr_NewException("libsnap.OSError", bases, NULL) : NULL;
  Py_XDECREF(bases);
  if (!OSErrorClass) return NULL;
  Py_INCREF(OSErrorClass);
  PyModule_AddObject(m, "OSError", OSErrorClass);
  PyObject *table = PyList_New(0);
  for (int i = 0; i < NERRORS; i++) {
    char cls[64], qual[80];
    class_name(ErrorNames[i], cls, sizeof cls);
    snprintf(qual, sizeof qual, "libsnap.%s", cls);
    /* InvalidArgument is also a ValueError: bad numbers and names are values */
    PyObject *base = ErrorCodes[i] == SNAP_EINVAL
                         ? PyTuple_Pack(2, ErrorBase, PyExc_ValueError)
                         : (Py_INCREF(ErrorBase), ErrorBase);
    ErrorClasses[i] =
        base ? PyErr_NewExceptionWithDoc(qual, snap_strerror(ErrorCodes[i]), base, NULL)
             : NULL;
    Py_XDECREF(base);
    if (!ErrorClasses[i]) return NULL;
    Py_INCREF(ErrorClasses[i]);
    PyModule_AddObject(m, cls, ErrorClasses[i]);
    PyObject *row = Py_BuildValue("(ssis)", cls, ErrorNames[i], ErrorCodes[i],
                                  snap_strerror(ErrorCodes[i]));
    PyList_Append(table, row);
    Py_XDECREF(row);
  }
  PyModule_AddObject(m, "ERRORS", table);
  /* type codes, from the header's enum */
  PyObject *types = PyDict_New();
  for (int t = SNAP_INT8; t <= SNAP_DURATION_US; t++) { /* the last type */
    PyObject *v = PyLong_FromLong(t);
    PyDict_SetItemString(types, snap_type_name((enum snap_type)t), v);
    Py_DECREF(v);
  }
  PyModule_AddObject(m, "TYPES", types);
  PyModule_AddStringConstant(m, "LIBRARY_VERSION", snap_version_string());
  PyModule_AddIntConstant(m, "FORMAT_VERSION", SNAP_FORMAT_VERSION);
  return m;
}
