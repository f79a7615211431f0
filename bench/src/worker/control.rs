//! The worker's end of the parent link: reads newline-delimited JSON from
//! stdin without blocking the event loop (the plan first, blocking; then
//! commands as they arrive), and writes [`WorkerMsg`] lines to stdout.

use std::io::{self, Write};

use crate::plan::WorkerMsg;

/// Longest line accepted from the parent.
const MAX_LINE: usize = 1 << 20;

/// Buffered line reader on file descriptor 0.
#[derive(Default)]
pub struct StdinLines {
    buf: Vec<u8>,
    eof: bool,
}

impl StdinLines {
    /// Reads (blocking) until one whole line is there and returns it.
    pub fn read_line_blocking(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(Some(line));
            }
            if self.eof || self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    /// Switches stdin to non-blocking for use in the event loop.
    pub fn set_nonblocking(&self) -> io::Result<()> {
        // SAFETY: fcntl on fd 0 with valid flags.
        unsafe {
            let flags = libc::fcntl(0, libc::F_GETFL);
            if flags < 0 || libc::fcntl(0, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Reads what is available; returns complete lines and whether stdin closed.
    pub fn read_available(&mut self) -> io::Result<(Vec<String>, bool)> {
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let mut lines = Vec::new();
        while let Some(line) = self.take_line() {
            lines.push(line);
        }
        if self.buf.len() > MAX_LINE {
            return Err(io::Error::other("line from parent too long"));
        }
        Ok((lines, self.eof))
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        // SAFETY: reads into a stack buffer of the given length.
        let n = unsafe { libc::read(0, chunk.as_mut_ptr().cast(), chunk.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(1) } else { Err(e) };
        }
        if n == 0 {
            self.eof = true;
        }
        self.buf.extend_from_slice(&chunk[..n as usize]);
        Ok(n as usize)
    }

    fn take_line(&mut self) -> Option<String> {
        let end = self.buf.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.buf.drain(..=end).collect();
        Some(String::from_utf8_lossy(&line[..end]).into_owned())
    }
}

/// Writes one message line to stdout.
pub fn send(msg: &WorkerMsg) {
    if let Ok(line) = serde_json::to_string(msg) {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}
