//! A restricted unpickler: it reads the pickles `torch.save` writes for a
//! state dict, and refuses everything else. It never runs code.
//!
//! A pickle is a program for a small stack machine. Most opcodes push plain
//! values (`K 3` pushes the int 3, `X <len> <utf-8>` a string, `)` an empty
//! tuple, `t` packs everything since the last MARK `(` into a tuple). Three
//! opcodes are what makes loading an arbitrary pickle dangerous:
//!
//! - `GLOBAL module name` pushes any importable object (`os.system`, ...);
//! - `REDUCE` calls the object under the top of the stack with the tuple on
//!   top: `f(*args)`;
//! - `BUILD` sets attributes on an object (and may call `__setstate__`).
//!
//! Here `GLOBAL` accepts only what a state dict names, and resolves it to a
//! tag of our own ([`Global`]), never to code: `collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2` and the storage types of f32, f16, bf16
//! and int64. `REDUCE` knows what those two callables do and builds the
//! result itself: an empty ordered dict, or a tensor description (storage,
//! offset, shape, strides). `BUILD` is accepted only on an ordered dict (torch
//! attaches the state dict's `_metadata` that way) and the state is dropped.
//! Anything else is refused with its name. This is the rule of torch's own
//! `torch/_weights_only_unpickler.py` (the `weights_only=True` loader), cut
//! down to a state dict, and the opcodes accepted are a subset of those it
//! accepts.
//!
//! Objects live in one arena and the stack and memo hold indices into it, so
//! a shared object is shared as in Python, nested or cyclic structures cost
//! no recursion, and memory grows at most linearly with the pickle's length.

use std::collections::HashMap;

/// An index into [`Pickled::objects`].
pub(crate) type Id = usize;

/// The tensor element types a state dict may hold here, from their storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StorageType {
    F32,
    F16,
    BF16,
    I64,
}

impl StorageType {
    pub fn element_size(self) -> u64 {
        match self {
            StorageType::F32 => 4,
            StorageType::F16 | StorageType::BF16 => 2,
            StorageType::I64 => 8,
        }
    }
    pub fn torch_name(self) -> &'static str {
        match self {
            StorageType::F32 => "torch.FloatStorage",
            StorageType::F16 => "torch.HalfStorage",
            StorageType::BF16 => "torch.BFloat16Storage",
            StorageType::I64 => "torch.LongStorage",
        }
    }
}

/// The only globals a pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensorV2,
    Storage(StorageType),
}

/// A storage named by a persistent id: `('storage', type, key, location, numel[, view])`.
#[derive(Debug, Clone)]
pub(crate) struct StorageRef {
    pub dtype: StorageType,
    pub key: String,
    pub numel: u64,
}

/// `_rebuild_tensor_v2(storage, offset, shape, strides, requires_grad, hooks[, metadata])`.
#[derive(Debug, Clone)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub strides: Vec<u64>,
}

/// A value the pickle built.
#[derive(Debug, Clone)]
pub(crate) enum Object {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too wide for i64 (LONG1 with more than 8 bytes), as its
    /// little-endian two's complement bytes: the legacy format's magic number.
    BigInt(Vec<u8>),
    Float,
    Str(String),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict {
        ordered: bool,
        items: Vec<(Id, Id)>,
        /// Position in `items` of each string key, so a repeated key replaces in place.
        index: HashMap<String, usize>,
    },
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

impl Object {
    /// The Python type's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Object::None => "None",
            Object::Bool(_) => "bool",
            Object::Int(_) | Object::BigInt(_) => "int",
            Object::Float => "float",
            Object::Str(_) => "str",
            Object::Tuple(_) => "tuple",
            Object::List(_) => "list",
            Object::Dict { ordered: true, .. } => "OrderedDict",
            Object::Dict { .. } => "dict",
            Object::Global(_) => "global",
            Object::Storage(_) => "storage",
            Object::Tensor(_) => "tensor",
        }
    }
}

/// Why unpickling stopped.
#[derive(Debug)]
pub(crate) enum PickleError {
    /// The bytes are not a well-formed pickle (truncated, stack underflow, bad memo index).
    Corrupt(String),
    /// A well-formed pickle that asks for something this reader never does.
    Refused(String),
}

type Res<T> = Result<T, PickleError>;

fn corrupt<T>(at: usize, msg: impl std::fmt::Display) -> Res<T> {
    Err(PickleError::Corrupt(format!("pickle byte {at}: {msg}")))
}
fn refused<T>(msg: impl Into<String>) -> Res<T> {
    Err(PickleError::Refused(msg.into()))
}

/// The result of one pickle: its objects and the one STOP returned.
pub(crate) struct Pickled {
    pub objects: Vec<Object>,
    pub root: Id,
}

impl Pickled {
    pub fn get(&self, id: Id) -> &Object {
        &self.objects[id]
    }
    pub fn root(&self) -> &Object {
        self.get(self.root)
    }
}

/// Unpickles the pickle starting at `bytes[start]`; returns it and the
/// position just past its STOP (the legacy format puts pickles back to back).
pub(crate) fn unpickle(bytes: &[u8], start: usize) -> Res<(Pickled, usize)> {
    let mut m = Machine {
        bytes,
        pos: start,
        objects: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let root = m.run()?;
    Ok((
        Pickled {
            objects: m.objects,
            root,
        },
        m.pos,
    ))
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    objects: Vec<Object>,
    stack: Vec<Id>,
    /// The stacks saved by MARK.
    marks: Vec<Vec<Id>>,
    memo: HashMap<u32, Id>,
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Res<&[u8]> {
        match self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()) {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => corrupt(
                self.pos,
                format!("needs {n} more bytes, the data ends (truncated?)"),
            ),
        }
    }
    fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Res<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Res<String> {
        let rest = &self.bytes[self.pos.min(self.bytes.len())..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return corrupt(self.pos, "GLOBAL without a newline (truncated?)");
        };
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn push(&mut self, o: Object) {
        self.objects.push(o);
        self.stack.push(self.objects.len() - 1);
    }
    fn pop(&mut self) -> Res<Id> {
        match self.stack.pop() {
            Some(id) => Ok(id),
            None => corrupt(self.pos - 1, "stack underflow"),
        }
    }
    fn top(&self) -> Res<Id> {
        match self.stack.last() {
            Some(&id) => Ok(id),
            None => corrupt(self.pos - 1, "stack underflow"),
        }
    }
    /// Everything pushed since the last MARK, and the stack from before it.
    fn pop_mark(&mut self) -> Res<Vec<Id>> {
        match self.marks.pop() {
            Some(before) => Ok(std::mem::replace(&mut self.stack, before)),
            None => corrupt(self.pos - 1, "no MARK to pop to"),
        }
    }
    fn string(&mut self, n: usize) -> Res<()> {
        let at = self.pos;
        match String::from_utf8(self.take(n)?.to_vec()) {
            Ok(s) => {
                self.push(Object::Str(s));
                Ok(())
            }
            Err(_) => corrupt(at, "a string that is not UTF-8"),
        }
    }

    fn run(&mut self) -> Res<Id> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO: torch writes 2; the opcodes below mean the same in 2..=5.
                    let p = self.u8()?;
                    if !(2..=5).contains(&p) {
                        return corrupt(at, format!("pickle protocol {p} (torch writes 2)"));
                    }
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(std::mem::take(&mut self.stack)),
                b'N' => self.push(Object::None),
                0x88 => self.push(Object::Bool(true)),
                0x89 => self.push(Object::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Object::Int(v as i64))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Object::Int(v as i64))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Object::Int(v as i64))
                }
                0x8a => {
                    // LONG1: n bytes of little-endian two's complement.
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    if n <= 8 {
                        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                            0xFF
                        } else {
                            0
                        };
                        let mut full = [fill; 8];
                        full[..n].copy_from_slice(&b);
                        self.push(Object::Int(i64::from_le_bytes(full)))
                    } else {
                        self.push(Object::BigInt(b))
                    }
                }
                b'G' => {
                    // BINFLOAT: 8 bytes big-endian; no state dict field needs its value.
                    self.take(8)?;
                    self.push(Object::Float)
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    self.string(n)?
                }
                b'U' => {
                    // SHORT_BINSTRING: Python 2's str, in old checkpoints.
                    let n = self.u8()? as usize;
                    self.string(n)?
                }
                b')' => self.push(Object::Tuple(Vec::new())),
                b']' => self.push(Object::List(Vec::new())),
                b'}' => self.push(Object::Dict {
                    ordered: false,
                    items: Vec::new(),
                    index: HashMap::new(),
                }),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Object::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return corrupt(at, "stack underflow");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Object::Tuple(items))
                }
                b'a' => {
                    let item = self.pop()?;
                    self.append(at, vec![item])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(at, items)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(at, vec![k, v])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(at, items)?
                }
                b'q' | b'r' => {
                    let i = if op == b'q' {
                        self.u8()? as u32
                    } else {
                        self.u32()?
                    };
                    let top = self.top()?;
                    self.memo.insert(i, top);
                }
                b'h' | b'j' => {
                    let i = if op == b'h' {
                        self.u8()? as u32
                    } else {
                        self.u32()?
                    };
                    match self.memo.get(&i) {
                        Some(&id) => self.stack.push(id),
                        None => return corrupt(at, format!("memo entry {i} was never stored")),
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = global(&module, &name)?;
                    self.push(Object::Global(g))
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = self.persistent_load(pid)?;
                    self.push(Object::Storage(s))
                }
                b'R' => self.reduce(at)?,
                b'b' => {
                    let state = self.pop()?;
                    let inst = self.top()?;
                    match (&self.objects[inst], &self.objects[state]) {
                        // torch attaches a state dict's `_metadata` (module versions) this way.
                        (Object::Dict { ordered: true, .. }, Object::Dict { .. }) => {}
                        (i, s) => {
                            return refused(format!(
                                "BUILD (setting state on an object) of a {} with a {}: only an OrderedDict's attributes may be set",
                                i.type_name(),
                                s.type_name()
                            ))
                        }
                    }
                }
                _ => {
                    return match opcode_name(op) {
                        Some(name) => refused(format!(
                            "pickle opcode {name} (byte {at}): a state dict does not need it"
                        )),
                        None => corrupt(at, format!("unknown pickle opcode 0x{op:02x}")),
                    }
                }
            }
        }
    }

    fn append(&mut self, at: usize, items: Vec<Id>) -> Res<()> {
        let target = self.top()?;
        match &mut self.objects[target] {
            Object::List(list) => {
                list.extend(items);
                Ok(())
            }
            o => corrupt(at, format!("APPEND to a {}, not a list", o.type_name())),
        }
    }

    fn set_items(&mut self, at: usize, items: Vec<Id>) -> Res<()> {
        if !items.len().is_multiple_of(2) {
            return corrupt(at, "SETITEMS with an odd number of items");
        }
        let target = self.top()?;
        for kv in items.chunks(2) {
            let key = match &self.objects[kv[0]] {
                Object::Str(s) => Some(s.clone()),
                _ => None,
            };
            let Object::Dict { items, index, .. } = &mut self.objects[target] else {
                let name = self.objects[target].type_name();
                return corrupt(at, format!("SETITEM on a {name}, not a dict"));
            };
            match key.as_ref().and_then(|k| index.get(k)) {
                Some(&i) => items[i].1 = kv[1],
                None => {
                    if let Some(k) = key {
                        index.insert(k, items.len());
                    }
                    items.push((kv[0], kv[1]));
                }
            }
        }
        Ok(())
    }

    /// REDUCE: `f(*args)` for the two callables we know, done by hand.
    fn reduce(&mut self, at: usize) -> Res<()> {
        let args = self.pop()?;
        let func = self.top()?;
        let Object::Tuple(args) = self.objects[args].clone() else {
            return corrupt(at, "REDUCE with arguments that are not a tuple");
        };
        let result = match self.objects[func] {
            Object::Global(Global::OrderedDict) if args.is_empty() => Object::Dict {
                ordered: true,
                items: Vec::new(),
                index: HashMap::new(),
            },
            Object::Global(Global::OrderedDict) => {
                return refused(
                    "collections.OrderedDict called with arguments (torch calls it with none)",
                )
            }
            Object::Global(Global::RebuildTensorV2) => {
                Object::Tensor(self.rebuild_tensor(at, &args)?)
            }
            Object::Global(Global::Storage(t)) => {
                return refused(format!(
                    "a call of {} (storages come only from persistent ids)",
                    t.torch_name()
                ))
            }
            ref o => {
                return refused(format!(
                    "REDUCE (a call) of a {}, which is not an allowed callable",
                    o.type_name()
                ))
            }
        };
        self.objects.push(result);
        let id = self.objects.len() - 1;
        *self.stack.last_mut().unwrap() = id;
        Ok(())
    }

    fn rebuild_tensor(&self, at: usize, args: &[Id]) -> Res<TensorRef> {
        let bad = |what: &str| -> Res<TensorRef> {
            corrupt(at, format!("_rebuild_tensor_v2(storage, offset, shape, strides, requires_grad, hooks[, metadata]): {what}"))
        };
        if !(6..=7).contains(&args.len()) {
            return bad(&format!("{} arguments", args.len()));
        }
        let Object::Storage(storage) = &self.objects[args[0]] else {
            return bad("the first argument is not a storage");
        };
        let Some(offset) = self.uint(args[1]) else {
            return bad("the offset is not a non-negative int");
        };
        let (Some(shape), Some(strides)) = (self.uints(args[2]), self.uints(args[3])) else {
            return bad("the shape or the strides are not a tuple of non-negative ints");
        };
        if shape.len() != strides.len() {
            return bad(&format!(
                "{} dimensions but {} strides",
                shape.len(),
                strides.len()
            ));
        }
        Ok(TensorRef {
            storage: storage.clone(),
            offset,
            shape,
            strides,
        })
    }

    fn uint(&self, id: Id) -> Option<u64> {
        match self.objects[id] {
            Object::Int(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    fn uints(&self, id: Id) -> Option<Vec<u64>> {
        match &self.objects[id] {
            Object::Tuple(items) => items.iter().map(|&i| self.uint(i)).collect(),
            _ => None,
        }
    }

    /// BINPERSID: the pickle names a storage saved outside it.
    fn persistent_load(&self, pid: Id) -> Res<StorageRef> {
        let at = self.pos - 1;
        let Object::Tuple(t) = &self.objects[pid] else {
            return refused(format!(
                "a persistent id that is a {}, not a storage tuple",
                self.objects[pid].type_name()
            ));
        };
        if !matches!(t.first().map(|&i| &self.objects[i]), Some(Object::Str(s)) if s == "storage") {
            return refused("a persistent id that is not ('storage', ...)");
        }
        if !(5..=6).contains(&t.len()) {
            return corrupt(at, format!("a storage id of {} items, not 5 or 6", t.len()));
        }
        let dtype = match &self.objects[t[1]] {
            Object::Global(Global::Storage(d)) => *d,
            o => return corrupt(at, format!("a storage whose type is a {}", o.type_name())),
        };
        let Object::Str(key) = &self.objects[t[2]] else {
            return corrupt(at, "a storage whose key is not a string");
        };
        let Some(numel) = self.uint(t[4]) else {
            return corrupt(at, "a storage whose size is not a non-negative int");
        };
        // The legacy format's sixth item describes a view into another storage
        // (written before torch 1.0); torch writes None today.
        if t.len() == 6 && !matches!(self.objects[t[5]], Object::None) {
            return refused(format!(
                "storage {key} is a view of another storage, which torch wrote before 1.0; HINT: load and save it again with a current torch"
            ));
        }
        Ok(StorageRef {
            dtype,
            key: key.clone(),
            numel,
        })
    }
}

/// GLOBAL: the allowed names, and a refusal naming any other.
fn global(module: &str, name: &str) -> Res<Global> {
    let storage = |t| Ok(Global::Storage(t));
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Ok(Global::RebuildTensorV2),
        ("torch", "FloatStorage") => storage(StorageType::F32),
        ("torch", "HalfStorage") => storage(StorageType::F16),
        ("torch", "BFloat16Storage") => storage(StorageType::BF16),
        ("torch", "LongStorage") => storage(StorageType::I64),
        ("torch", n) if n.ends_with("Storage") => refused(format!(
            "global torch.{n}: thaw reads f32, f16 and bf16 tensors (and skips int64 ones); HINT: convert the tensors with .float() before torch.save"
        )),
        _ => refused(format!(
            "global {module}.{name}: a state dict names only collections.OrderedDict, torch._utils._rebuild_tensor_v2 and tensor storage types, so this file holds something else (code, or a whole pickled model); HINT: save model.state_dict(), or load it with torch.load(path, weights_only=True) and save what you need"
        )),
    }
}

/// Names of the pickle opcodes this reader refuses (it never executes them).
fn opcode_name(op: u8) -> Option<&'static str> {
    Some(match op {
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x82..=0x84 => "EXT1/EXT2/EXT4",
        b'P' => "PERSID",
        b'I' | b'L' | b'F' | b'S' | b'V' => "a text-protocol (protocol 0) opcode",
        0x8b => "LONG4",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        b'B' | b'C' => "BINBYTES",
        b'T' => "BINSTRING",
        b'0' | b'1' | b'2' => "POP/POP_MARK/DUP",
        b'd' | b'l' | b'g' | b'p' => "a text-protocol (protocol 0) opcode",
        _ => return None,
    })
}
