//! A small streaming writer of Python's pickle format (protocol 2), for
//! PyTorch's memory snapshots. It writes only the opcodes the memory_viz
//! page's own unpickler reads (dicts, lists, pairs, ints, strings,
//! booleans) and batches list and dict items by 1000, as Python's
//! pickler does: the page appends a batch with one call, whose argument count
//! a browser limits. Keys, and whatever the caller asks (frame lists), are
//! written once and fetched from the memo after.

use std::io::{self, Write};

const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const MARK: u8 = b'(';
const EMPTY_DICT: u8 = b'}';
const EMPTY_LIST: u8 = b']';
const SETITEMS: u8 = b'u';
const APPENDS: u8 = b'e';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const LONG1: u8 = 0x8a;
const BINUNICODE: u8 = b'X';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const TUPLE2: u8 = 0x86;
const LONG_BINPUT: u8 = b'r';
const LONG_BINGET: u8 = b'j';

const BATCH: usize = 1000;

/// An open container: items written since its last batch, and whether it is a dict.
struct Open {
    items: usize,
    dict: bool,
}

pub struct Pickle<W: Write> {
    out: W,
    open: Vec<Open>,
    /// Memo slots of the keys written so far, by the address of their
    /// static text (a short list, scanned: cheaper than hashing the text).
    keys: Vec<(usize, u32)>,
    memo_next: u32,
}

impl<W: Write> Pickle<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&[PROTO, 2])?;
        Ok(Pickle {
            out,
            open: Vec::new(),
            keys: Vec::new(),
            memo_next: 0,
        })
    }

    /// Ends the pickle; every container must be closed.
    pub fn finish(mut self) -> io::Result<W> {
        debug_assert!(self.open.is_empty());
        self.out.write_all(&[STOP])?;
        Ok(self.out)
    }

    /// A value (or a dict's value) was completed: count it in its container.
    fn done(&mut self) -> io::Result<()> {
        if let Some(o) = self.open.last_mut() {
            o.items += 1;
            let per = if o.dict { 2 * BATCH } else { BATCH };
            if o.items == per {
                let op = if o.dict { SETITEMS } else { APPENDS };
                o.items = 0;
                self.out.write_all(&[op, MARK])?;
            }
        }
        Ok(())
    }

    fn begin(&mut self, empty: u8, dict: bool) -> io::Result<()> {
        self.out.write_all(&[empty, MARK])?;
        self.open.push(Open { items: 0, dict });
        Ok(())
    }

    fn end(&mut self) -> io::Result<()> {
        if let Some(o) = self.open.pop() {
            // A MARK with nothing after it is closed by an empty batch.
            let op = if o.dict { SETITEMS } else { APPENDS };
            self.out.write_all(&[op])?;
        }
        self.done()
    }

    pub fn begin_list(&mut self) -> io::Result<()> {
        self.begin(EMPTY_LIST, false)
    }

    pub fn end_list(&mut self) -> io::Result<()> {
        self.end()
    }

    /// A dict: then `key` and a value, in turns.
    pub fn begin_dict(&mut self) -> io::Result<()> {
        self.begin(EMPTY_DICT, true)
    }

    pub fn end_dict(&mut self) -> io::Result<()> {
        self.end()
    }

    /// A dict key: written once, then fetched from the memo (as Python's
    /// pickler does with repeated strings), which keeps a million segments small.
    pub fn key(&mut self, k: &'static str) -> io::Result<()> {
        let at = k.as_ptr() as usize;
        if let Some(&(_, slot)) = self.keys.iter().find(|(a, _)| *a == at) {
            self.get(slot)?;
            return self.done();
        }
        self.raw_str(k)?;
        let slot = self.put()?;
        self.keys.push((at, slot));
        self.done()
    }

    /// Stores the value on top in a new memo slot.
    fn put(&mut self) -> io::Result<u32> {
        let slot = self.memo_next;
        self.memo_next += 1;
        self.out.write_all(&[LONG_BINPUT])?;
        self.out.write_all(&slot.to_le_bytes())?;
        Ok(slot)
    }

    fn get(&mut self, slot: u32) -> io::Result<()> {
        self.out.write_all(&[LONG_BINGET])?;
        self.out.write_all(&slot.to_le_bytes())
    }

    /// A value stored earlier with `remember`.
    pub fn recall(&mut self, slot: u32) -> io::Result<()> {
        self.get(slot)?;
        self.done()
    }

    /// Closes a list and keeps it in the memo for `recall`: the same list
    /// again, in five bytes.
    pub fn end_list_remembered(&mut self) -> io::Result<u32> {
        if let Some(o) = self.open.pop() {
            debug_assert!(!o.dict);
            self.out.write_all(&[APPENDS])?;
        }
        let slot = self.put()?;
        self.done()?;
        Ok(slot)
    }

    pub fn str(&mut self, s: &str) -> io::Result<()> {
        self.raw_str(s)?;
        self.done()
    }

    fn raw_str(&mut self, s: &str) -> io::Result<()> {
        self.out.write_all(&[BINUNICODE])?;
        self.out.write_all(&(s.len() as u32).to_le_bytes())?;
        self.out.write_all(s.as_bytes())
    }

    pub fn int(&mut self, v: i64) -> io::Result<()> {
        self.raw_int(v as i128)?;
        self.done()
    }

    pub fn uint(&mut self, v: u64) -> io::Result<()> {
        self.raw_int(v as i128)?;
        self.done()
    }

    fn raw_int(&mut self, v: i128) -> io::Result<()> {
        match v {
            0..=0xff => self.out.write_all(&[BININT1, v as u8]),
            0x100..=0xffff => {
                self.out.write_all(&[BININT2])?;
                self.out.write_all(&(v as u16).to_le_bytes())
            }
            _ if v >= i32::MIN as i128 && v <= i32::MAX as i128 => {
                self.out.write_all(&[BININT])?;
                self.out.write_all(&(v as i32).to_le_bytes())
            }
            _ => {
                // Little-endian two's complement, as short as the sign allows.
                let bytes = v.to_le_bytes();
                let mut n = 16;
                while n > 1 {
                    let top = bytes[n - 1];
                    let below_sign = bytes[n - 2] & 0x80;
                    if (top == 0 && below_sign == 0) || (top == 0xff && below_sign != 0) {
                        n -= 1;
                    } else {
                        break;
                    }
                }
                self.out.write_all(&[LONG1, n as u8])?;
                self.out.write_all(&bytes[..n])
            }
        }
    }

    pub fn bool(&mut self, v: bool) -> io::Result<()> {
        self.out.write_all(&[if v { NEWTRUE } else { NEWFALSE }])?;
        self.done()
    }

    /// A pair of ints, as a tuple.
    pub fn pair(&mut self, a: i64, b: i64) -> io::Result<()> {
        self.raw_int(a as i128)?;
        self.raw_int(b as i128)?;
        self.out.write_all(&[TUPLE2])?;
        self.done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_take_the_shortest_opcode() {
        let mut p = Pickle::new(Vec::new()).unwrap();
        p.begin_list().unwrap();
        for v in [
            0u64,
            255,
            256,
            65535,
            65536,
            1 << 31,
            0x7f00_0000_0000,
            u64::MAX,
        ] {
            p.uint(v).unwrap();
        }
        p.int(-1).unwrap();
        p.end_list().unwrap();
        let b = p.finish().unwrap();
        assert_eq!(&b[..5], &[PROTO, 2, EMPTY_LIST, MARK, BININT1]);
        // 2^31: one byte past i32, LONG1 of 5 bytes (sign byte 0).
        let at = b.windows(2).position(|w| w == [LONG1, 5]).unwrap();
        assert_eq!(&b[at + 2..at + 7], &[0, 0, 0, 0x80, 0]);
        // u64::MAX needs a ninth byte for the sign.
        assert!(b.windows(2).any(|w| w == [LONG1, 9]));
        assert_eq!(b.last(), Some(&STOP));
    }

    #[test]
    fn keys_and_remembered_lists_are_written_once() {
        let mut p = Pickle::new(Vec::new()).unwrap();
        p.begin_list().unwrap();
        p.begin_dict().unwrap();
        p.key("frames").unwrap();
        p.begin_list().unwrap();
        p.str("a frame").unwrap();
        let slot = p.end_list_remembered().unwrap();
        p.key("again").unwrap();
        p.recall(slot).unwrap();
        p.end_dict().unwrap();
        p.begin_dict().unwrap();
        p.key("frames").unwrap();
        p.recall(slot).unwrap();
        p.end_dict().unwrap();
        p.end_list().unwrap();
        let b = p.finish().unwrap();
        let text = String::from_utf8_lossy(&b);
        assert_eq!(text.matches("frames").count(), 1);
        assert_eq!(text.matches("a frame").count(), 1);
    }

    #[test]
    fn long_lists_are_written_in_batches() {
        let mut p = Pickle::new(Vec::new()).unwrap();
        p.begin_list().unwrap();
        for _ in 0..2500 {
            p.bool(true).unwrap();
        }
        p.end_list().unwrap();
        let b = p.finish().unwrap();
        assert_eq!(b.iter().filter(|&&c| c == APPENDS).count(), 3);
        assert_eq!(b.iter().filter(|&&c| c == MARK).count(), 3);
    }
}
