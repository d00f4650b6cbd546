//! The archive: a tar stream, plain or xz-compressed, hashed as it is
//! written and as it is read, so that every byte passes through once.
//!
//! Members are written in manifest order with GNU headers; names and link
//! targets longer than a header holds go into GNU long-name records, and
//! link targets are stored byte for byte (no normalisation), so that an
//! archive member always matches its manifest line exactly.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};
use xz2::read::XzDecoder;
use xz2::stream::{Check, MtStreamBuilder};
use xz2::write::XzEncoder;

use super::manifest::{ArchiveFormat, Entry, EntryKind, Meta};

/// Buffer size for reading and writing file contents and the archive.
pub(crate) const IO_BUFFER: usize = 1 << 20;

/// How to compress the archive that [`super::create_with`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar file: as fast as the disk, as large as the tree.
    None,
    /// xz with `preset` (0 to 9) on `threads` threads.
    Xz {
        /// The xz preset, as `xz -0` … `xz -9`.
        preset: u32,
        /// Encoder threads (at least 1).
        threads: u32,
    },
}

impl Compression {
    /// The archive format this compression writes.
    pub fn format(self) -> ArchiveFormat {
        match self {
            Compression::None => ArchiveFormat::Tar,
            Compression::Xz { .. } => ArchiveFormat::TarXz,
        }
    }
}

/// A SHA-256 in progress with the number of bytes fed to it.
#[derive(Default, Clone)]
pub(crate) struct Hash {
    sha: Sha256,
    len: u64,
}

impl Hash {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The digest in hex, and the byte count.
    pub(crate) fn finish(self) -> (String, u64) {
        (hex::encode(self.sha.finalize()), self.len)
    }
}

/// A reader that hashes what passes through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hash: Hash,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hash: Hash::default(),
        }
    }

    pub(crate) fn hash(&self) -> &Hash {
        &self.hash
    }

    /// Reads the rest of the stream, so the hash covers all of it.
    pub(crate) fn drain(mut self) -> io::Result<Hash> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.hash)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hash.update(&buf[..read]);
        Ok(read)
    }
}

/// Where the tar stream goes: the archive file, through xz or not.
enum Sink {
    Plain(FileWriter),
    Xz(XzEncoder<FileWriter>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(writer) => writer.write(buf),
            Sink::Xz(writer) => writer.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(writer) => writer.flush(),
            Sink::Xz(writer) => writer.flush(),
        }
    }
}

impl Sink {
    fn new(file: File, compression: Compression) -> io::Result<Self> {
        let file = FileWriter::new(file);
        Ok(match compression {
            Compression::None => Sink::Plain(file),
            Compression::Xz { preset, threads } => {
                Sink::Xz(XzEncoder::new_stream(file, xz_encoder(preset, threads)?))
            }
        })
    }

    /// Ends the stream and writes it out; the file is not yet synced.
    fn finish(self) -> io::Result<(File, Hash)> {
        match self {
            Sink::Plain(writer) => writer.finish(),
            Sink::Xz(encoder) => encoder.finish()?.finish(),
        }
    }
}

/// How many chunks may wait between the two sides of a [`FileWriter`] or
/// [`FileReader`].
const PIPE_DEPTH: usize = 4;

/// Writes a file on a thread of its own, hashing what it writes, so that
/// hashing and writing the archive overlap with reading and hashing the
/// files that go into it (the machine has two cores; both hashes would
/// otherwise queue on one).
pub(crate) struct FileWriter {
    chunk: Vec<u8>,
    to_thread: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<io::Result<(File, Hash)>>>,
}

impl FileWriter {
    /// Starts writing to `file` at its current position.
    pub(crate) fn new(mut file: File) -> Self {
        let (to_thread, chunks) = sync_channel::<Vec<u8>>(PIPE_DEPTH);
        let (give_back, spare) = sync_channel::<Vec<u8>>(PIPE_DEPTH + 2);
        let thread = std::thread::spawn(move || {
            let mut hash = Hash::default();
            for chunk in chunks {
                hash.update(&chunk);
                file.write_all(&chunk)?;
                let _ = give_back.try_send(chunk);
            }
            Ok((file, hash))
        });
        Self {
            chunk: Vec::with_capacity(IO_BUFFER),
            to_thread: Some(to_thread),
            spare,
            thread: Some(thread),
        }
    }

    /// Writes out what is buffered and returns the file and the hash of
    /// everything written.
    pub(crate) fn finish(mut self) -> io::Result<(File, Hash)> {
        if !self.chunk.is_empty() {
            self.send()?;
        }
        self.join()
    }

    fn send(&mut self) -> io::Result<()> {
        let mut next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(IO_BUFFER));
        next.clear();
        let full = std::mem::replace(&mut self.chunk, next);
        let sent = self
            .to_thread
            .as_ref()
            .is_some_and(|to_thread| to_thread.send(full).is_ok());
        if sent {
            Ok(())
        } else {
            // The thread stopped on an error: that error is the one to report.
            Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("the archive writer stopped early")))
        }
    }

    fn join(&mut self) -> io::Result<(File, Hash)> {
        self.to_thread = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the archive writer thread panicked")),
            None => Err(io::Error::other("the archive writer already stopped")),
        }
    }
}

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let taken = buf.len().min(IO_BUFFER - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..taken]);
        if self.chunk.len() == IO_BUFFER {
            self.send()?;
        }
        Ok(taken)
    }

    /// Chunks reach the file in order; [`FileWriter::finish`] waits for all.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

/// Reads a file on a thread of its own, hashing what it reads, ahead of
/// the reader that parses and hashes the members.
pub(crate) struct FileReader {
    chunks: Option<Receiver<io::Result<Vec<u8>>>>,
    give_back: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    thread: Option<JoinHandle<Hash>>,
}

impl FileReader {
    /// Starts reading `file` from its current position to its end.
    pub(crate) fn new(mut file: File) -> Self {
        let (to_main, chunks) = sync_channel::<io::Result<Vec<u8>>>(PIPE_DEPTH);
        let (give_back, spare) = sync_channel::<Vec<u8>>(PIPE_DEPTH + 2);
        let thread = std::thread::spawn(move || {
            let mut hash = Hash::default();
            loop {
                let mut buf = spare.try_recv().unwrap_or_default();
                buf.resize(IO_BUFFER, 0);
                let read = match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => {
                        let _ = to_main.send(Err(err));
                        break;
                    }
                };
                buf.truncate(read);
                hash.update(&buf);
                if to_main.send(Ok(buf)).is_err() {
                    break;
                }
            }
            hash
        });
        Self {
            chunks: Some(chunks),
            give_back,
            chunk: Vec::new(),
            pos: 0,
            thread: Some(thread),
        }
    }

    /// Reads to the end of the file and returns the hash of all of it.
    pub(crate) fn finish(mut self) -> io::Result<Hash> {
        if let Some(chunks) = self.chunks.take() {
            for chunk in chunks {
                chunk?;
            }
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(hash)) => Ok(hash),
            _ => Err(io::Error::other("the archive reader thread panicked")),
        }
    }
}

impl Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.chunk.len() {
            let Some(chunks) = &self.chunks else {
                return Ok(0);
            };
            match chunks.recv() {
                Ok(chunk) => {
                    let used = std::mem::replace(&mut self.chunk, chunk?);
                    let _ = self.give_back.try_send(used);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let len = buf.len().min(self.chunk.len() - self.pos);
        buf[..len].copy_from_slice(&self.chunk[self.pos..self.pos + len]);
        self.pos += len;
        Ok(len)
    }
}

impl Drop for FileReader {
    fn drop(&mut self) {
        // Closing the channel stops the thread at its next chunk.
        self.chunks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An xz encoder: `preset` on `threads` threads, CRC64 as `xz` uses.
pub(crate) fn xz_encoder(preset: u32, threads: u32) -> io::Result<xz2::stream::Stream> {
    MtStreamBuilder::new()
        .preset(preset)
        .threads(threads.max(1))
        .check(Check::Crc64)
        .encoder()
        .map_err(io::Error::other)
}

/// Writes the archive's members in manifest order.
pub(crate) struct ArchiveWriter {
    builder: tar::Builder<Sink>,
}

impl ArchiveWriter {
    /// Starts an archive in `file` (empty, opened for writing).
    pub(crate) fn new(file: File, compression: Compression) -> io::Result<Self> {
        Ok(Self {
            builder: tar::Builder::new(Sink::new(file, compression)?),
        })
    }

    /// Adds a directory or a symbolic link.
    pub(crate) fn add_entry(&mut self, entry: &Entry) -> io::Result<()> {
        let name = member_name(&entry.path);
        match &entry.kind {
            EntryKind::Dir { meta } => {
                let mut header = header(EntryType::Directory, meta, 0);
                self.builder.append_data(&mut header, name, io::empty())
            }
            EntryKind::Symlink { meta, target } => {
                let mut header = header(EntryType::Symlink, meta, 0);
                let target = target.as_bytes();
                if target.len() < header.as_old().linkname.len() {
                    header.set_link_name_literal(target)?;
                } else {
                    // A GNU long link record, holding the target as is.
                    let mut long = Header::new_gnu();
                    long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
                    long.set_entry_type(EntryType::GNULongLink);
                    long.set_mode(0o644);
                    long.set_size(target.len() as u64 + 1);
                    long.set_cksum();
                    self.builder.append(&long, target.chain(&[0u8][..]))?;
                }
                self.builder.append_data(&mut header, name, io::empty())
            }
            EntryKind::File { .. } | EntryKind::Absent => {
                unreachable!("files go through add_file; absent paths have no member")
            }
        }
    }

    /// Adds a regular file of `size` bytes read from `contents`; returns
    /// the hash of what was archived. Fewer bytes than `size` is an error.
    pub(crate) fn add_file(
        &mut self,
        path: &str,
        meta: &Meta,
        size: u64,
        contents: &mut dyn Read,
    ) -> io::Result<Hash> {
        let mut header = header(EntryType::Regular, meta, size);
        let mut reader = HashingReader::new(contents.take(size));
        self.builder
            .append_data(&mut header, member_name(path), &mut reader)?;
        if reader.hash().len() != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{path} shrank from {size} to {} bytes while it was archived",
                    reader.hash().len()
                ),
            ));
        }
        Ok(reader.hash)
    }

    /// Ends the archive and syncs it; returns its size and hash.
    pub(crate) fn finish(self) -> io::Result<(String, u64)> {
        let (file, hash) = self.builder.into_inner()?.finish()?;
        file.sync_all()?;
        Ok(hash.finish())
    }
}

/// The member name of a path inside the root: relative, as tar wants.
pub(crate) fn member_name(path: &str) -> &str {
    path.trim_start_matches('/')
}

fn header(kind: EntryType, meta: &Meta, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(meta.mode);
    header.set_uid(u64::from(meta.uid));
    header.set_gid(u64::from(meta.gid));
    header.set_mtime(header_mtime(meta));
    header.set_size(size);
    header
}

/// The whole seconds a tar header holds (it cannot hold times before 1970;
/// the manifest keeps the exact time).
pub(crate) fn header_mtime(meta: &Meta) -> u64 {
    u64::try_from(meta.mtime_sec).unwrap_or(0)
}

/// Where the tar stream comes from: the archive file, through xz or not,
/// hashed as the file's bytes are read.
pub(crate) enum Source {
    Plain(FileReader),
    Xz(XzDecoder<FileReader>),
}

impl Source {
    /// Reads `file` from its current position.
    pub(crate) fn new(file: &File, format: ArchiveFormat) -> io::Result<Self> {
        let raw = FileReader::new(file.try_clone()?);
        Ok(match format {
            ArchiveFormat::Tar => Source::Plain(raw),
            ArchiveFormat::TarXz => Source::Xz(XzDecoder::new(raw)),
        })
    }

    /// Reads to the end of the file and returns the hash of all of it.
    pub(crate) fn finish(self) -> io::Result<Hash> {
        match self {
            Source::Plain(raw) => raw.finish(),
            Source::Xz(mut decoder) => {
                io::copy(&mut decoder, &mut io::sink())?;
                decoder.into_inner().finish()
            }
        }
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(reader) => reader.read(buf),
            Source::Xz(reader) => reader.read(buf),
        }
    }
}

/// The hash of a whole file, read from its current position.
pub(crate) fn hash_file(file: &File) -> io::Result<Hash> {
    HashingReader::new(BufReader::with_capacity(IO_BUFFER, file)).drain()
}

/// Copies all of `from` into `to`, hashing it on the way.
pub(crate) fn copy_hashed(from: &mut dyn Read, to: &mut dyn Write) -> io::Result<Hash> {
    let mut hash = Hash::default();
    let mut buf = vec![0u8; IO_BUFFER];
    loop {
        let read = match from.read(&mut buf) {
            Ok(0) => return Ok(hash),
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hash.update(&buf[..read]);
        to.write_all(&buf[..read])?;
    }
}
