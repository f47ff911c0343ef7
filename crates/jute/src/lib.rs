//! Jute, ZooKeeper's record format: a parser for the IDL ([`schema`]), a
//! build-time Rust code generator ([`codegen`]) and the runtime codec the
//! generated code calls ([`Reader`], [`Writer`], [`Record`], [`frame`]).
//!
//! Encoding (ZooKeeper's `BinaryOutputArchive`): big-endian `int`/`long`,
//! `boolean` and `byte` as one byte, `buffer`/`ustring` as an int length then
//! the bytes (-1 = null), `vector` as an int count then the items, nested
//! records inline. A `buffer` keeps null apart from empty (`Option<Vec<u8>>`):
//! ZooKeeper stores and returns null znode data as such, and Java clients
//! (Kafka's among them) see the difference. Null strings and vectors read as
//! empty ones, and Janus writes them non-null.
//!
//! Decoding never panics and never allocates more than the remaining input:
//! every length is checked against what is left before anything is reserved.

pub mod codegen;
pub mod schema;

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record truncated: needed {needed} more bytes at offset {at}")]
    Truncated { at: usize, needed: usize },
    #[error("negative length {len} at offset {at}")]
    BadLength { at: usize, len: i32 },
}

/// A record type generated from the schema.
pub trait Record: Sized {
    /// The schema's class name.
    const NAME: &'static str;
    fn encode(&self, w: &mut Writer);
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// The record's bytes.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.encode(&mut w);
        w.into_inner()
    }

    /// Decode a record from the start of `bytes` (trailing bytes allowed,
    /// as ZooKeeper's archives allow them).
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode(&mut Reader::new(bytes))
    }
}

/// Reads jute primitives from a byte slice, bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// What is left, without consuming it.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                at: self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    pub fn byte(&mut self) -> Result<i8, DecodeError> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    /// Java's `readBoolean`: any non-zero byte is true.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.array::<1>()?[0] != 0)
    }

    pub fn f32(&mut self) -> Result<f32, DecodeError> {
        Ok(f32::from_be_bytes(self.array()?))
    }

    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    /// A length prefix: -1 (null) reads as 0; other negatives are errors.
    fn len(&mut self) -> Result<usize, DecodeError> {
        let at = self.pos;
        match self.i32()? {
            -1 => Ok(0),
            n if n < 0 => Err(DecodeError::BadLength { at, len: n }),
            n => Ok(n as usize),
        }
    }

    pub fn buffer(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.len()?;
        Ok(self.take(n)?.to_vec())
    }

    /// A `buffer` as generated records hold it: length -1 is `None`.
    pub fn nullable_buffer(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        let at = self.pos;
        match self.i32()? {
            -1 => Ok(None),
            n if n < 0 => Err(DecodeError::BadLength { at, len: n }),
            n => Ok(Some(self.take(n as usize)?.to_vec())),
        }
    }

    /// A `ustring`; invalid UTF-8 is replaced, as Java's decoder does.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.len()?;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    /// A `vector<T>`; `item` decodes one element.
    pub fn vec<T>(
        &mut self,
        mut item: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.len()?;
        // Every element takes at least one byte, so a count beyond the
        // remaining input is a lie: never reserve for it.
        let mut v = Vec::with_capacity(n.min(self.remaining()));
        for _ in 0..n {
            v.push(item(self)?);
        }
        Ok(v)
    }
}

/// Writes jute primitives.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn byte(&mut self, v: i8) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }
    pub fn f32(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Lengths beyond `i32::MAX` cannot be framed anyway; clamp rather than wrap.
    fn put_len(&mut self, n: usize) {
        self.i32(i32::try_from(n).unwrap_or(i32::MAX));
    }
    pub fn buffer(&mut self, v: &[u8]) {
        self.put_len(v.len());
        self.buf.extend_from_slice(v);
    }
    pub fn string(&mut self, v: &str) {
        self.buffer(v.as_bytes());
    }
    /// `None` is written as length -1, Java's null array.
    pub fn nullable_buffer(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => self.buffer(v),
            None => self.i32(-1),
        }
    }
    pub fn vec<T>(&mut self, v: &[T], mut item: impl FnMut(&mut Writer, &T)) {
        self.put_len(v.len());
        for x in v {
            item(self, x);
        }
    }
    /// Raw bytes (an already encoded record).
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
}

/// ZooKeeper's framing: a 4-byte big-endian length, then the payload.
pub mod frame {
    /// Prefix `payload` with its length.
    pub fn encode(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + 4);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The length a frame header announces, if it is an acceptable one
    /// (0..=max); `None` means the connection must be closed.
    pub fn length(header: [u8; 4], max: usize) -> Option<usize> {
        let n = i32::from_be_bytes(header);
        if n < 0 || n as usize > max {
            return None;
        }
        Some(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip() {
        let mut w = Writer::new();
        w.i32(-5);
        w.i64(1 << 40);
        w.bool(true);
        w.buffer(b"abc");
        w.string("ü");
        w.vec(&["x".to_string(), "yz".to_string()], |w, s| w.string(s));
        let bytes = w.into_inner();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.i32(), Ok(-5));
        assert_eq!(r.i64(), Ok(1 << 40));
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.buffer(), Ok(b"abc".to_vec()));
        assert_eq!(r.string(), Ok("ü".to_string()));
        assert_eq!(
            r.vec(|r| r.string()),
            Ok(vec!["x".to_string(), "yz".to_string()])
        );
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn nulls_and_lies() {
        let null = (-1i32).to_be_bytes();
        assert_eq!(Reader::new(&null).buffer(), Ok(vec![]));
        assert_eq!(Reader::new(&null).nullable_buffer(), Ok(None));
        let empty = 0i32.to_be_bytes();
        assert_eq!(Reader::new(&empty).nullable_buffer(), Ok(Some(vec![])));
        let mut w = Writer::new();
        w.nullable_buffer(None);
        w.nullable_buffer(Some(b""));
        assert_eq!(w.into_inner(), [null, empty].concat());
        assert_eq!(Reader::new(&null).string(), Ok(String::new()));
        let neg = (-2i32).to_be_bytes();
        assert!(matches!(
            Reader::new(&neg).buffer(),
            Err(DecodeError::BadLength { .. })
        ));
        // A huge count with no data behind it fails without allocating.
        let huge = i32::MAX.to_be_bytes();
        assert!(matches!(
            Reader::new(&huge).vec(|r| r.i64()),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            Reader::new(&huge).buffer(),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            Reader::new(&[0, 0]).i32(),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn frames() {
        assert_eq!(frame::encode(b"ab"), vec![0, 0, 0, 2, b'a', b'b']);
        assert_eq!(frame::length([0, 0, 0, 5], 10), Some(5));
        assert_eq!(frame::length([0, 0, 1, 0], 10), None);
        assert_eq!(frame::length([0xff, 0xff, 0xff, 0xff], 10), None);
    }
}
