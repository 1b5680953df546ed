//! A small, bounds-checked zip reader: enough for `torch.save` archives
//! (stored entries) and Python wheels (deflated entries).
//!
//! A zip file is read from its end:
//!
//! ```text
//! [local header 1][data 1] ... [local header n][data n]   the entries
//! [central directory: one record per entry]              name, method, sizes, CRC,
//!                                                        offset of the local header
//! [zip64 end record][zip64 locator]                      only when a count, size or
//!                                                        offset overflows 16/32 bits
//! [end of central directory]                             where the directory is
//! ```
//!
//! Each entry's data starts after its local header, whose name and extra
//! field lengths may differ from the directory's (torch pads the local extra
//! field so that tensor data is 64-byte aligned). Every offset and length
//! read from the file is checked against the file before use, every entry's
//! CRC-32 is checked, and inflating stops at the declared size, so a
//! damaged file gives an error, never a panic or an out-of-bounds read.

use std::io::Read;

/// One file inside the archive, as the central directory describes it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: String,
    method: u16,
    flags: u16,
    crc32: u32,
    compressed_size: u64,
    size: u64,
    local_header: u64,
}

/// A zip archive held in memory: its bytes and its central directory.
pub(crate) struct Archive<'a> {
    bytes: &'a [u8],
    pub entries: Vec<Entry>,
}

fn slice(b: &[u8], at: u64, len: u64) -> Result<&[u8], String> {
    let end = at.checked_add(len).filter(|&e| e <= b.len() as u64);
    match end {
        Some(end) => Ok(&b[at as usize..end as usize]),
        None => Err(format!(
            "a zip record at byte {at} of length {len} runs past the end of the {} bytes",
            b.len()
        )),
    }
}
fn u16_at(b: &[u8], at: u64) -> Result<u16, String> {
    Ok(u16::from_le_bytes(slice(b, at, 2)?.try_into().unwrap()))
}
fn u32_at(b: &[u8], at: u64) -> Result<u32, String> {
    Ok(u32::from_le_bytes(slice(b, at, 4)?.try_into().unwrap()))
}
fn u64_at(b: &[u8], at: u64) -> Result<u64, String> {
    Ok(u64::from_le_bytes(slice(b, at, 8)?.try_into().unwrap()))
}

impl<'a> Archive<'a> {
    /// Reads the central directory. Errors say what is missing or out of bounds.
    pub fn parse(bytes: &'a [u8]) -> Result<Archive<'a>, String> {
        // The end record is 22 bytes plus a comment of at most 65535 bytes.
        let lowest = bytes.len().saturating_sub(22 + 65535);
        let eocd = (lowest..=bytes.len().saturating_sub(22))
            .rev()
            .find(|&i| bytes[i..].starts_with(b"PK\x05\x06"))
            .ok_or("no zip end-of-central-directory record: the archive is truncated")?
            as u64;
        let mut count = u16_at(bytes, eocd + 10)? as u64;
        let mut dir_size = u32_at(bytes, eocd + 12)? as u64;
        let mut dir_offset = u32_at(bytes, eocd + 16)? as u64;
        if count == 0xFFFF || dir_size == 0xFFFF_FFFF || dir_offset == 0xFFFF_FFFF {
            let locator = eocd
                .checked_sub(20)
                .ok_or("a zip64 archive without its zip64 locator")?;
            if slice(bytes, locator, 4)? != b"PK\x06\x07" {
                return Err("a zip64 archive without its zip64 locator".into());
            }
            let end64 = u64_at(bytes, locator + 8)?;
            if slice(bytes, end64, 4)? != b"PK\x06\x06" {
                return Err(format!("no zip64 end record at byte {end64}"));
            }
            count = u64_at(bytes, end64 + 32)?;
            dir_size = u64_at(bytes, end64 + 40)?;
            dir_offset = u64_at(bytes, end64 + 48)?;
        }
        let dir = slice(bytes, dir_offset, dir_size)?;
        // Each record is at least 46 bytes: this caps the allocation by the file.
        if count > dir.len() as u64 / 46 {
            return Err(format!(
                "the zip directory claims {count} entries in {} bytes",
                dir.len()
            ));
        }
        let mut entries = Vec::with_capacity(count as usize);
        let mut at = 0u64;
        for _ in 0..count {
            if slice(dir, at, 4)? != b"PK\x01\x02" {
                return Err(format!(
                    "damaged zip directory record at byte {}",
                    dir_offset + at
                ));
            }
            let name_len = u16_at(dir, at + 28)? as u64;
            let extra_len = u16_at(dir, at + 30)? as u64;
            let comment_len = u16_at(dir, at + 32)? as u64;
            let name = String::from_utf8_lossy(slice(dir, at + 46, name_len)?).into_owned();
            let mut e = Entry {
                name,
                flags: u16_at(dir, at + 8)?,
                method: u16_at(dir, at + 10)?,
                crc32: u32_at(dir, at + 16)?,
                compressed_size: u32_at(dir, at + 20)? as u64,
                size: u32_at(dir, at + 24)? as u64,
                local_header: u32_at(dir, at + 42)? as u64,
            };
            read_zip64_extra(&mut e, slice(dir, at + 46 + name_len, extra_len)?)?;
            entries.push(e);
            at += 46 + name_len + extra_len + comment_len;
        }
        Ok(Archive { bytes, entries })
    }

    /// The entry called `name`, if any.
    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The entry's raw bytes as stored (compressed if it is compressed).
    fn raw(&self, e: &Entry) -> Result<&'a [u8], String> {
        if slice(self.bytes, e.local_header, 4)? != b"PK\x03\x04" {
            return Err(format!(
                "{}: no local header at byte {}",
                e.name, e.local_header
            ));
        }
        if e.flags & 1 != 0 {
            return Err(format!("{}: the entry is encrypted", e.name));
        }
        let name_len = u16_at(self.bytes, e.local_header + 26)? as u64;
        let extra_len = u16_at(self.bytes, e.local_header + 28)? as u64;
        slice(
            self.bytes,
            e.local_header + 30 + name_len + extra_len,
            e.compressed_size,
        )
        .map_err(|m| format!("{}: {m}", e.name))
    }

    /// A stored (uncompressed) entry's bytes, borrowed from the archive; its CRC is checked.
    pub fn stored(&self, e: &Entry) -> Result<&'a [u8], String> {
        if e.method != 0 || e.size != e.compressed_size {
            return Err(format!(
                "{}: compressed (method {}); torch.save stores its entries uncompressed",
                e.name, e.method
            ));
        }
        let data = self.raw(e)?;
        check_crc(e, data)?;
        Ok(data)
    }

    /// An entry's bytes, inflated if deflated (method 8); its CRC is checked.
    /// The output never grows past the size the directory declares.
    pub fn read(&self, e: &Entry) -> Result<Vec<u8>, String> {
        match e.method {
            0 => self.stored(e).map(<[u8]>::to_vec),
            8 => {
                let raw = self.raw(e)?;
                // Deflate cannot compress more than 1032:1, so a larger claim is a lie.
                if e.size > raw.len() as u64 * 1032 + 1024 {
                    return Err(format!(
                        "{}: claims {} bytes inflated from {}",
                        e.name,
                        e.size,
                        raw.len()
                    ));
                }
                let mut out = Vec::with_capacity(e.size as usize);
                flate2::read::DeflateDecoder::new(raw)
                    .take(e.size + 1)
                    .read_to_end(&mut out)
                    .map_err(|err| format!("{}: cannot inflate: {err}", e.name))?;
                if out.len() as u64 != e.size {
                    return Err(format!(
                        "{}: inflates to {} bytes, the directory says {}",
                        e.name,
                        out.len(),
                        e.size
                    ));
                }
                check_crc(e, &out)?;
                Ok(out)
            }
            m => Err(format!(
                "{}: compression method {m} (only stored and deflate are read)",
                e.name
            )),
        }
    }
}

fn check_crc(e: &Entry, data: &[u8]) -> Result<(), String> {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    if crc.sum() != e.crc32 {
        return Err(format!("{}: CRC-32 mismatch (the data is damaged)", e.name));
    }
    Ok(())
}

/// The zip64 extra field (id 1) holds, in this order, those of size,
/// compressed size and local header offset whose 32-bit field is 0xFFFFFFFF.
fn read_zip64_extra(e: &mut Entry, mut extra: &[u8]) -> Result<(), String> {
    while extra.len() >= 4 {
        let id = u16_at(extra, 0)?;
        let len = u16_at(extra, 2)? as u64;
        let body = slice(extra, 4, len)?;
        if id == 1 {
            let mut at = 0;
            for field in [&mut e.size, &mut e.compressed_size, &mut e.local_header] {
                if *field == 0xFFFF_FFFF {
                    *field = u64_at(body, at)?;
                    at += 8;
                }
            }
        }
        extra = &extra[4 + len as usize..];
    }
    Ok(())
}
