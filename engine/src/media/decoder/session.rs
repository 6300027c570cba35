//! One decode, seen from the engine: spawn the child (this binary with
//! [`super::CHILD_ARG`], empty environment, piped stdio), send the [`Request`], read its
//! [`Header`], send [`Start`], then yield [`Event`]s. A watchdog kills a child that leaves
//! the engine waiting longer than the stall limit (time the engine spends busy with earlier
//! frames does not count); the child's stderr (FFmpeg's own messages) goes to the log and its
//! last lines into error messages. Whatever the child sends is checked again here — sizes,
//! lengths, dimensions — before it is used. Dropping a session kills and reaps the child.

use super::protocol::{
    self, AudioHead, Failure, FrameHead, Header, MAX_MESSAGE, PictureHead, Request, Start, Summary,
    tag,
};
use crate::error::JobError;
use crate::media::video::frame::Frame;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How decodes are run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address space each child may map, bytes.
    pub memory_bytes: u64,
    /// A child that leaves the engine waiting this long is killed (`decode_timeout`).
    pub stall: Duration,
    /// Largest picture, pixels.
    pub max_pixels: u64,
    /// Largest width or height.
    pub max_dimension: u32,
    /// Most video frames.
    pub max_frames: u64,
}

impl Settings {
    /// From the configured limits.
    pub fn from_limits(l: &crate::config::Limits) -> Settings {
        Settings {
            memory_bytes: l.decoder_memory_bytes,
            stall: Duration::from_secs(l.decode_stall_secs.max(1)),
            max_pixels: l.max_pixels,
            max_dimension: l.max_dimension,
            max_frames: l.max_frames,
        }
    }
}

/// What the child sent.
#[derive(Debug)]
pub enum Event {
    /// A video frame, 8-bit 4:2:0 BT.709 at the size asked for.
    Frame(FrameHead, Frame),
    /// An AAC packet.
    Audio(AudioHead, Vec<u8>),
    /// The still picture (RGB or RGBA).
    Picture(PictureHead, Vec<u8>),
    /// The end, with how it went.
    Done(Summary),
}

/// Shared between the reader and the watchdog.
#[derive(Debug)]
struct Watch {
    waiting_since: Mutex<Option<Instant>>,
    timed_out: AtomicBool,
    stop: AtomicBool,
    pid: i32,
    stall: Duration,
}

impl Watch {
    fn arm(&self, on: bool) {
        if let Ok(mut w) = self.waiting_since.lock() {
            *w = on.then(Instant::now);
        }
    }

    fn run(&self) {
        let tick = (self.stall / 20).clamp(Duration::from_millis(20), Duration::from_millis(250));
        while !self.stop.load(Ordering::Acquire) {
            std::thread::park_timeout(tick);
            let since = self.waiting_since.lock().ok().and_then(|w| *w);
            if since.is_some_and(|t| t.elapsed() > self.stall) {
                self.timed_out.store(true, Ordering::Release);
                kill(self.pid);
                return;
            }
        }
    }
}

#[allow(unsafe_code)]
fn kill(pid: i32) {
    // SAFETY: signalling our own child by pid; it is reaped only by Session::drop/finish,
    // after the watchdog has stopped, so the pid cannot have been reused.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// A running decode.
pub struct Session {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stdin: Option<ChildStdin>,
    watch: Arc<Watch>,
    watchdog: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<()>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    start: Option<Start>,
    what: String,
    done: bool,
    frames: u64,
    max_frames: u64,
    memory_bytes: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("what", &self.what).finish()
    }
}

fn spawn_err(e: std::io::Error) -> JobError {
    JobError::Storage {
        message: format!("starting the decoder process: {e}"),
        class: crate::error::ErrorClass::Transient,
    }
}

impl Session {
    /// Start decoding `req.path`; returns once the child has described the source.
    pub fn open(mut req: Request, s: &Settings, what: &str) -> Result<(Session, Header), JobError> {
        req.memory_bytes = s.memory_bytes;
        req.max_pixels = s.max_pixels;
        req.max_dimension = s.max_dimension;
        req.max_frames = s.max_frames;
        let exe = program()?;
        let mut child = Command::new(exe)
            .arg(super::CHILD_ARG)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let pid = child.id() as i32;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| spawn_err(std::io::Error::other("no stdout")))?;
        grow_pipe(&stdout);
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = child.stderr.take().map(|e| {
            let tail = tail.clone();
            std::thread::spawn(move || log_stderr(e, &tail))
        });
        let watch = Arc::new(Watch {
            waiting_since: Mutex::new(None),
            timed_out: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            pid,
            stall: s.stall,
        });
        let watchdog = {
            let w = watch.clone();
            std::thread::spawn(move || w.run())
        };
        let mut session = Session {
            stdin: child.stdin.take(),
            child,
            stdout: BufReader::with_capacity(1 << 20, stdout),
            watch,
            watchdog: Some(watchdog),
            stderr,
            tail,
            start: None,
            what: what.to_string(),
            done: false,
            frames: 0,
            max_frames: s.max_frames,
            memory_bytes: s.memory_bytes,
        };
        let line = serde_json::to_string(&req).map_err(|e| session.fatal(e.to_string()))?;
        session.send_line(&line)?;
        let (t, body) = session.message()?;
        match t {
            tag::HEADER => {
                let h: Header = serde_json::from_slice(&body)
                    .map_err(|e| session.fatal(format!("a bad header: {e}")))?;
                Ok((session, h))
            }
            tag::FAILED => Err(session.failure(&body)),
            other => Err(session.fatal(format!("an unexpected message {other:?} first"))),
        }
    }

    /// Let the child decode, delivering frames of the given size.
    pub fn start(&mut self, start: Start) -> Result<(), JobError> {
        let line = serde_json::to_string(&start).map_err(|e| self.fatal(e.to_string()))?;
        self.send_line(&line)?;
        self.start = Some(start);
        Ok(())
    }

    fn send_line(&mut self, line: &str) -> Result<(), JobError> {
        let r = match self.stdin.as_mut() {
            Some(w) => w
                .write_all(line.as_bytes())
                .and_then(|()| w.write_all(b"\n"))
                .and_then(|()| w.flush()),
            None => Err(std::io::Error::other("stdin closed")),
        };
        r.map_err(|_| self.ended())
    }

    /// The next event; `Ok(None)` after [`Event::Done`].
    pub fn next_event(&mut self) -> Result<Option<Event>, JobError> {
        if self.done {
            return Ok(None);
        }
        self.watch.arm(true);
        let r = self.read_event();
        self.watch.arm(false);
        r
    }

    fn read_event(&mut self) -> Result<Option<Event>, JobError> {
        let (t, len) = self.head()?;
        match t {
            tag::FRAME => self.frame(len).map(Some),
            tag::AUDIO => {
                let body = self.body(len)?;
                let head =
                    AudioHead::decode(&body).ok_or_else(|| self.fatal("a short audio packet"))?;
                Ok(Some(Event::Audio(head, body[AudioHead::LEN..].to_vec())))
            }
            tag::PICTURE => {
                let mut body = self.body(len)?;
                let head =
                    PictureHead::decode(&body).ok_or_else(|| self.fatal("a short picture"))?;
                let want =
                    u64::from(head.width) * u64::from(head.height) * u64::from(head.channels);
                if !matches!(head.channels, 3 | 4) || want != (body.len() - PictureHead::LEN) as u64
                {
                    return Err(self.fatal("a picture whose size does not add up"));
                }
                body.drain(..PictureHead::LEN);
                Ok(Some(Event::Picture(head, body)))
            }
            tag::DONE => {
                let body = self.body(len)?;
                let s: Summary = serde_json::from_slice(&body)
                    .map_err(|e| self.fatal(format!("a bad summary: {e}")))?;
                self.done = true;
                Ok(Some(Event::Done(s)))
            }
            tag::FAILED => {
                let body = self.body(len)?;
                Err(self.failure(&body))
            }
            other => Err(self.fatal(format!("an unknown message {other:?}"))),
        }
    }

    fn frame(&mut self, len: u32) -> Result<Event, JobError> {
        let mut h = [0u8; FrameHead::LEN];
        self.read_exact(&mut h)?;
        let head = FrameHead::decode(&h).ok_or_else(|| self.fatal("a short frame"))?;
        let (w, hgt) = self.start.as_ref().map_or((0, 0), |s| (s.width, s.height));
        let (cw, ch) = Frame::chroma_size(w, hgt);
        let luma = u64::from(w) * u64::from(hgt);
        let chroma = u64::from(cw) * u64::from(ch);
        if (head.width, head.height) != (w, hgt)
            || u64::from(len) != FrameHead::LEN as u64 + luma + 2 * chroma
        {
            return Err(self.fatal(format!(
                "a {}x{} frame of {len} bytes where {w}x{hgt} was asked for",
                head.width, head.height
            )));
        }
        self.frames += 1;
        if self.max_frames > 0 && self.frames > self.max_frames {
            // The headers promised fewer: the data is longer than the limit allows.
            kill(self.watch.pid);
            self.done = true;
            return Err(JobError::limit("max_frames", self.frames, self.max_frames));
        }
        let mut f = Frame {
            width: w,
            height: hgt,
            y: vec![0; luma as usize],
            u: vec![0; chroma as usize],
            v: vec![0; chroma as usize],
        };
        self.read_exact(&mut f.y)?;
        self.read_exact(&mut f.u)?;
        self.read_exact(&mut f.v)?;
        Ok(Event::Frame(head, f))
    }

    fn head(&mut self) -> Result<(u8, u32), JobError> {
        let mut b = [0u8; 5];
        self.read_exact(&mut b)?;
        let len = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
        if len > MAX_MESSAGE {
            return Err(self.fatal(format!("a message of {len} bytes")));
        }
        Ok((b[0], len))
    }

    fn body(&mut self, len: u32) -> Result<Vec<u8>, JobError> {
        let mut v = vec![0u8; len as usize];
        self.read_exact(&mut v)?;
        Ok(v)
    }

    fn message(&mut self) -> Result<(u8, Vec<u8>), JobError> {
        self.watch.arm(true);
        let r = self.head().and_then(|(t, len)| Ok((t, self.body(len)?)));
        self.watch.arm(false);
        r
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), JobError> {
        match self.stdout.read_exact(buf) {
            Ok(()) => Ok(()),
            Err(_) => Err(self.ended()),
        }
    }

    /// The child stopped talking: why (killed for stalling, crashed, or exited).
    fn ended(&mut self) -> JobError {
        self.done = true;
        self.stop_watchdog();
        let status = self.reap();
        let tail = self.tail();
        if self.watch.timed_out.load(Ordering::Acquire) {
            return JobError::DecodeTimeout(format!(
                "decoding {} stalled: nothing came out for {} s (limits.decode_stall_secs), \
                 so the decoder process was stopped{tail}",
                self.what,
                self.watch.stall.as_secs()
            ));
        }
        if tail.contains("memory allocation of") {
            return JobError::DecoderLimit(format!(
                "decoding {} needs more memory than limits.decoder_memory_bytes allows \
                 ({} MiB){tail}",
                self.what,
                self.memory_bytes >> 20
            ));
        }
        let how = match status {
            Some(s) => match s.signal() {
                Some(sig) => format!("was killed by {}", signal_name(sig)),
                None => format!("exited with status {}", s.code().unwrap_or(-1)),
            },
            None => "vanished".into(),
        };
        JobError::DecoderCrashed(format!(
            "the decoder process {how} while decoding {}{tail}",
            self.what
        ))
    }

    /// Wait for the child's exit (a child that closed its output but lingers is killed
    /// after a moment).
    fn reap(&mut self) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    return self.child.wait().ok();
                }
                Err(_) => return None,
            }
        }
    }

    fn failure(&mut self, body: &[u8]) -> JobError {
        self.done = true;
        let Ok(f) = serde_json::from_slice::<Failure>(body) else {
            return self.fatal("an unreadable failure");
        };
        // The child exits right after its failure message: let FFmpeg's last words (on
        // stderr) arrive, they usually say what was wrong ("moov atom not found").
        self.stop_watchdog();
        let _ = self.reap();
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
        let message = format!("{}{}", f.message, self.tail());
        match f.code.as_str() {
            "unsupported_codec" => JobError::UnsupportedCodec(message),
            "unsupported_format" => JobError::UnsupportedFormat(message),
            "limit_exceeded" | "decoder_limit" => JobError::DecoderLimit(message),
            _ => JobError::CorruptInput(message),
        }
    }

    /// The child broke the protocol: that is a crash as far as this job is concerned.
    fn fatal(&mut self, what: impl std::fmt::Display) -> JobError {
        self.done = true;
        kill(self.watch.pid);
        JobError::DecoderCrashed(format!(
            "the decoder process sent {what} while decoding {}",
            self.what
        ))
    }

    fn tail(&self) -> String {
        let lines: Vec<String> = self
            .tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        if lines.is_empty() {
            String::new()
        } else {
            format!(" (decoder said: {})", lines.join(" | "))
        }
    }

    fn stop_watchdog(&mut self) {
        self.watch.stop.store(true, Ordering::Release);
        if let Some(h) = self.watchdog.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop_watchdog();
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
    }
}

/// The binary to run as the child: this one.
fn program() -> Result<PathBuf, JobError> {
    std::env::current_exe().map_err(spawn_err)
}

/// A bigger pipe (1 MiB) means fewer wake-ups per frame.
#[allow(unsafe_code)]
fn grow_pipe(stdout: &ChildStdout) {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a pipe fd we own; failure is harmless (the default size stays).
    unsafe {
        libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}

fn log_stderr(e: std::process::ChildStderr, tail: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(e).lines().map_while(Result::ok) {
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        tracing::debug!(target: "mediaflow::decoder", "{line}");
        if let Ok(mut t) = tail.lock() {
            if t.len() == 4 {
                t.pop_front();
            }
            t.push_back(line.chars().take(240).collect());
        }
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGSEGV => "SIGSEGV (a crash)".into(),
        libc::SIGABRT => {
            "SIGABRT (an abort, e.g. out of memory under limits.decoder_memory_bytes)".into()
        }
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGKILL => "SIGKILL".into(),
        other => format!("signal {other}"),
    }
}

/// A request for `mode` on `path`, with the test-only fault for `uri` when one is asked for.
pub fn request(path: &std::path::Path, mode: protocol::Mode, uri: &str) -> Request {
    Request {
        path: path.to_path_buf(),
        mode,
        memory_bytes: 0,
        max_pixels: 0,
        max_dimension: 0,
        max_frames: 0,
        fault: super::fault_for(uri),
    }
}
