//! A small writer (and a header reader, for verification) of the GGUF v3 file format that
//! llama.cpp loads: metadata key/values, tensor descriptors, then aligned tensor data.

use std::io::{self, Read, Write};

/// GGUF magic bytes at the start of every file.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// The GGUF format version written.
pub const VERSION: u32 = 3;
/// Alignment of the tensor data section and of every tensor in it (GGUF default).
pub const ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `UINT32`.
    U32(u32),
    /// `INT32`.
    I32(i32),
    /// `FLOAT32`.
    F32(f32),
    /// `BOOL`.
    Bool(bool),
    /// `STRING`.
    Str(String),
    /// `ARRAY` of `STRING`.
    StrArray(Vec<String>),
    /// `ARRAY` of `INT32`.
    I32Array(Vec<i32>),
}

impl Value {
    fn type_id(&self) -> u32 {
        match self {
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::Str(_) => 8,
            Value::StrArray(_) | Value::I32Array(_) => 9,
        }
    }
}

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    /// 32-bit float (ggml type 0).
    F32,
    /// 16-bit float (ggml type 1).
    F16,
}

impl TensorType {
    /// The ggml type id.
    pub fn id(self) -> u32 {
        match self {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            TensorType::F32 => 4,
            TensorType::F16 => 2,
        }
    }

    fn from_id(id: u32) -> Option<Self> {
        match id {
            0 => Some(TensorType::F32),
            1 => Some(TensorType::F16),
            _ => None,
        }
    }
}

/// One tensor to write: name, ggml dimensions (fastest-varying first, i.e. the reverse of the
/// PyTorch shape) and little-endian element bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// GGUF tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// ggml dimensions `ne[0], ne[1], …`.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: TensorType,
    /// Raw little-endian data; length must be the product of `dims` times the element size.
    pub data: Vec<u8>,
}

/// Descriptor of a tensor as read back from a file header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// ggml dimensions.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: TensorType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
}

/// Header of a GGUF file: metadata and tensor descriptors, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Metadata key/values.
    pub metadata: Vec<(String, Value)>,
    /// Tensor descriptors.
    pub tensors: Vec<TensorInfo>,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
}

impl Header {
    /// The value of a metadata key, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

fn padding(pos: u64) -> u64 {
    (ALIGNMENT - pos % ALIGNMENT) % ALIGNMENT
}

fn write_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut impl Write, v: &Value) -> io::Result<()> {
    match v {
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[u8::from(*x)]),
        Value::Str(s) => write_str(w, s),
        Value::StrArray(items) => {
            w.write_all(&8u32.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|s| write_str(w, s))
        }
        Value::I32Array(items) => {
            w.write_all(&5u32.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
    }
}

/// Writes a complete GGUF v3 file. Fails with `InvalidInput` if a tensor's data length does
/// not match its dimensions.
pub fn write(
    w: &mut impl Write,
    metadata: &[(String, Value)],
    tensors: &[Tensor],
) -> io::Result<()> {
    let mut w = CountingWriter { inner: w, pos: 0 };
    w.write_all(MAGIC)?;
    w.write_all(&VERSION.to_le_bytes())?;
    w.write_all(&(tensors.len() as u64).to_le_bytes())?;
    w.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (key, value) in metadata {
        write_str(&mut w, key)?;
        w.write_all(&value.type_id().to_le_bytes())?;
        write_value(&mut w, value)?;
    }
    let mut offset = 0u64;
    for t in tensors {
        let expected = t.dims.iter().product::<u64>() * t.ty.size();
        if expected != t.data.len() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("tensor {}: {} bytes for dims {:?}", t.name, t.data.len(), t.dims),
            ));
        }
        write_str(&mut w, &t.name)?;
        w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
        t.dims.iter().try_for_each(|d| w.write_all(&d.to_le_bytes()))?;
        w.write_all(&t.ty.id().to_le_bytes())?;
        w.write_all(&offset.to_le_bytes())?;
        offset += expected + padding(expected);
    }
    let pad = padding(w.pos);
    w.write_all(&vec![0u8; pad as usize])?;
    for t in tensors {
        w.write_all(&t.data)?;
        let pad = padding(t.data.len() as u64);
        w.write_all(&vec![0u8; pad as usize])?;
    }
    w.flush()
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    pos: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct CountingReader<R: Read> {
    inner: R,
    pos: u64,
}

impl<R: Read> CountingReader<R> {
    fn bytes<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b)?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u32(&mut self) -> io::Result<u32> {
        self.bytes().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> io::Result<u64> {
        self.bytes().map(u64::from_le_bytes)
    }
    fn string(&mut self) -> io::Result<String> {
        let len = self.u64()?;
        if len > 1 << 24 {
            return Err(invalid(format!("string of {len} bytes")));
        }
        let mut buf = vec![0u8; len as usize];
        self.inner.read_exact(&mut buf)?;
        self.pos += len;
        String::from_utf8(buf).map_err(|e| invalid(e.to_string()))
    }
    fn value(&mut self, ty: u32) -> io::Result<Value> {
        Ok(match ty {
            4 => Value::U32(self.u32()?),
            5 => Value::I32(self.bytes().map(i32::from_le_bytes)?),
            6 => Value::F32(self.bytes().map(f32::from_le_bytes)?),
            7 => Value::Bool(self.bytes::<1>()?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                let elem = self.u32()?;
                let n = self.u64()?;
                match elem {
                    8 => Value::StrArray((0..n).map(|_| self.string()).collect::<Result<_, _>>()?),
                    5 => Value::I32Array(
                        (0..n)
                            .map(|_| self.bytes().map(i32::from_le_bytes))
                            .collect::<Result<_, _>>()?,
                    ),
                    other => {
                        return Err(invalid(format!("unsupported array element type {other}")))
                    }
                }
            }
            other => return Err(invalid(format!("unsupported metadata type {other}"))),
        })
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads the header of a GGUF file (the value types this writer produces).
pub fn read_header(r: impl Read) -> io::Result<Header> {
    let mut r = CountingReader { inner: r, pos: 0 };
    if &r.bytes::<4>()? != MAGIC {
        return Err(invalid("not a GGUF file".into()));
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(invalid(format!("GGUF version {version}")));
    }
    let n_tensors = r.u64()?;
    let n_kv = r.u64()?;
    let mut metadata = Vec::new();
    for _ in 0..n_kv {
        let key = r.string()?;
        let ty = r.u32()?;
        metadata.push((key, r.value(ty)?));
    }
    let mut tensors = Vec::new();
    for _ in 0..n_tensors {
        let name = r.string()?;
        let n_dims = r.u32()?;
        let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
        let ty_id = r.u32()?;
        let ty = TensorType::from_id(ty_id)
            .ok_or_else(|| invalid(format!("tensor {name}: unsupported type {ty_id}")))?;
        let offset = r.u64()?;
        tensors.push(TensorInfo { name, dims, ty, offset });
    }
    let data_offset = r.pos + padding(r.pos);
    Ok(Header { metadata, tensors, data_offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_data_round_trip() {
        let metadata = vec![
            ("general.architecture".to_string(), Value::Str("bert".into())),
            ("bert.block_count".to_string(), Value::U32(2)),
            ("bert.attention.layer_norm_epsilon".to_string(), Value::F32(1e-12)),
            ("bert.attention.causal".to_string(), Value::Bool(false)),
            (
                "tokenizer.ggml.tokens".to_string(),
                Value::StrArray(vec!["[CLS]".into(), "\u{2581}hi".into()]),
            ),
            ("tokenizer.ggml.token_type".to_string(), Value::I32Array(vec![3, 1])),
        ];
        let a: Vec<u8> = [1.0f32, 2.0, 3.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let b: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let tensors = vec![
            Tensor { name: "a.bias".into(), dims: vec![3], ty: TensorType::F32, data: a.clone() },
            Tensor {
                name: "b.weight".into(),
                dims: vec![3, 2],
                ty: TensorType::F32,
                data: b.clone(),
            },
        ];
        let mut buf = Vec::new();
        write(&mut buf, &metadata, &tensors).unwrap();
        assert_eq!(&buf[..4], MAGIC);
        let h = read_header(buf.as_slice()).unwrap();
        assert_eq!(h.metadata, metadata);
        assert_eq!(h.get("bert.block_count"), Some(&Value::U32(2)));
        assert_eq!(h.data_offset % ALIGNMENT, 0);
        assert_eq!(h.tensors.len(), 2);
        assert_eq!(h.tensors[0].offset, 0);
        assert_eq!(h.tensors[1].offset, 32, "second tensor starts at the next aligned offset");
        assert_eq!(h.tensors[1].dims, vec![3, 2]);
        let start = (h.data_offset + h.tensors[1].offset) as usize;
        assert_eq!(&buf[start..start + b.len()], b.as_slice());
        let start = h.data_offset as usize;
        assert_eq!(&buf[start..start + a.len()], a.as_slice());
        assert_eq!(buf.len() as u64 % ALIGNMENT, 0);
    }

    #[test]
    fn mismatched_tensor_size_is_refused() {
        let t = Tensor { name: "x".into(), dims: vec![4], ty: TensorType::F32, data: vec![0; 8] };
        let err = write(&mut Vec::new(), &[], &[t]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn garbage_is_not_a_gguf_file() {
        assert!(read_header(&b"NOPE\x03\0\0\0"[..]).is_err());
    }
}
