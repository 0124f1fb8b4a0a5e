//! The encode half of a ladder device that has no hardware encoder: GPUs without NVENC (H100,
//! H200, A100) decode and scale on the GPU, and each rung's scaled NV12 picture is encoded here,
//! on the CPU, by one worker thread per rung. It keeps NVENC's asynchronous contract: `encode`
//! queues a picture and returns the access units that are ready so far, `finish` waits for the
//! rest; a bounded queue per rung is the back-pressure.
//!
//! The emulated device (`accel::emulated`, a test double of the driver) encodes through the
//! same code, so what runs on an NVENC-less GPU is what `cargo test` runs.

use std::collections::VecDeque;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

pub use super::host_nv12::HostNv12;
use super::{DeviceAu, DeviceError, RungSettings};
use crate::codec::{CpuEncoder, Encoder, EncoderSettings};

/// Pictures queued per rung before `encode` blocks: enough to keep the worker busy while the
/// GPU scales the next one, few enough to bound memory (a 1080p NV12 picture is 3 MiB).
const QUEUE: usize = 3;

struct Job {
    pic: HostNv12,
    pts: i64,
    keyframe: bool,
    settings: RungSettings,
}

/// What a worker hands back per job: the access unit (if the encoder made one) and the picture
/// buffer, for reuse.
type Done = (Result<Option<DeviceAu>, DeviceError>, HostNv12);

struct Worker {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    /// Jobs sent and not yet answered.
    pending: usize,
    /// Buffers back from the worker, for the next pictures of this rung (at most what it had
    /// in flight: `buffer_or` drops those of an old size).
    spare: VecDeque<HostNv12>,
    /// Answers taken and not yet handed out: access units in order, and the first error.
    ready: Vec<DeviceAu>,
    error: Option<DeviceError>,
}

/// One CPU encoder per rung, each on its own thread.
pub struct HostEncoders {
    workers: Vec<Worker>,
}

impl std::fmt::Debug for HostEncoders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostEncoders").field("rungs", &self.workers.len()).finish()
    }
}

impl HostEncoders {
    /// One worker per rung, encoding with the process's CPU encoder (`--cpu-encoder`).
    pub fn new(rungs: usize) -> Result<HostEncoders, DeviceError> {
        HostEncoders::with_encoder(rungs, CpuEncoder::process_default())
    }

    /// One worker per rung, encoding with `encoder`.
    pub fn with_encoder(rungs: usize, encoder: CpuEncoder) -> Result<HostEncoders, DeviceError> {
        let mut workers = Vec::with_capacity(rungs);
        for rung in 0..rungs {
            let (jobs, job_rx) = crossbeam_channel::bounded::<Job>(QUEUE);
            let (done_tx, done) = crossbeam_channel::unbounded::<Done>();
            let thread = std::thread::Builder::new()
                .name(format!("zh-host-enc-{rung}"))
                .spawn(move || encode_loop(&job_rx, &done_tx, encoder))
                .map_err(|e| host_error("spawn", e))?;
            workers.push(Worker {
                jobs: Some(jobs),
                done,
                thread: Some(thread),
                pending: 0,
                spare: VecDeque::new(),
                ready: Vec::new(),
                error: None,
            });
        }
        Ok(HostEncoders { workers })
    }

    /// A buffer for the next picture of `rung`: a returned one when its size fits, else new
    /// (pageable).
    pub fn buffer(&mut self, rung: usize, width: u32, height: u32, pitch: usize) -> HostNv12 {
        let new = || Ok::<_, std::convert::Infallible>(HostNv12::new(width, height, pitch));
        match self.buffer_or(rung, (width, height, pitch), new) {
            Ok(b) => b,
        }
    }

    /// A buffer for the next picture of `rung` of `(width, height, pitch)`: a returned one of
    /// that size, else one made by `new` (the GPU's pinned memory). Returned buffers of other
    /// sizes are dropped (the rung's size changed), so a rung allocates once per size, and no
    /// more buffers than it has pictures in flight.
    pub fn buffer_or<E>(
        &mut self,
        rung: usize,
        (width, height, pitch): (u32, u32, usize),
        new: impl FnOnce() -> Result<HostNv12, E>,
    ) -> Result<HostNv12, E> {
        let w = &mut self.workers[rung];
        take_answers(w, false);
        w.spare.retain(|b| (b.width, b.height, b.pitch) == (width, height, pitch));
        w.spare.pop_front().map_or_else(new, Ok)
    }

    /// Gives back a buffer `rung` took and will not encode (its picture was dropped).
    pub fn give_back(&mut self, rung: usize, buf: HostNv12) {
        self.workers[rung].spare.push_back(buf);
    }

    /// Queues `pic` for `rung` (an IDR when `keyframe`); returns the access units ready so far,
    /// oldest first. Blocks only while the rung's queue is full.
    pub fn encode(
        &mut self,
        rung: usize,
        pic: HostNv12,
        pts: i64,
        keyframe: bool,
        settings: &RungSettings,
    ) -> Result<Vec<DeviceAu>, DeviceError> {
        let w = &mut self.workers[rung];
        let job = Job { pic, pts, keyframe, settings: *settings };
        if w.jobs.as_ref().expect("open until drop").send(job).is_ok() {
            w.pending += 1;
        } else {
            w.error.get_or_insert_with(|| host_error("encode", "the worker stopped"));
        }
        take_answers(w, false);
        hand_out(w)
    }

    /// Waits for every picture queued for `rung`; returns their access units.
    pub fn finish(&mut self, rung: usize) -> Result<Vec<DeviceAu>, DeviceError> {
        let w = &mut self.workers[rung];
        take_answers(w, true);
        hand_out(w)
    }
}

/// The access units ready, or the first error since the last call (the rung's failed picture
/// fails its segment; the units beside it are dropped with it).
fn hand_out(w: &mut Worker) -> Result<Vec<DeviceAu>, DeviceError> {
    let aus = std::mem::take(&mut w.ready);
    match w.error.take() {
        Some(e) => Err(e),
        None => Ok(aus),
    }
}

/// Takes the worker's answers into `ready` (all of them when `wait`).
fn take_answers(w: &mut Worker, wait: bool) {
    while w.pending > 0 {
        let done = if wait { w.done.recv().map_err(|_| TryRecvError::Disconnected) } else { w.done.try_recv() };
        let (r, buf) = match done {
            Ok(d) => d,
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Disconnected) => {
                // The worker is gone (it panicked): its pictures will not come back.
                w.pending = 0;
                w.error.get_or_insert_with(|| host_error("encode", "the worker stopped"));
                break;
            }
        };
        w.pending -= 1;
        w.spare.push_back(buf);
        match r {
            Ok(Some(au)) => w.ready.push(au),
            Ok(None) => {}
            Err(e) => {
                w.error.get_or_insert(e);
            }
        }
    }
}

fn encode_loop(jobs: &Receiver<Job>, done: &Sender<Done>, encoder: CpuEncoder) {
    let mut enc: Option<Encoder> = None;
    for job in jobs {
        let r = encode_one(&mut enc, encoder, &job);
        if done.send((r, job.pic)).is_err() {
            return;
        }
    }
}

fn encode_one(enc: &mut Option<Encoder>, encoder: CpuEncoder, job: &Job) -> Result<Option<DeviceAu>, DeviceError> {
    let s = &job.settings;
    if (job.pic.width, job.pic.height) != (s.width, s.height) {
        return Err(host_error(
            "encode",
            format!("picture {}x{} for a {}x{} rendition", job.pic.width, job.pic.height, s.width, s.height),
        ));
    }
    let settings =
        EncoderSettings { width: s.width, height: s.height, bitrate: s.bitrate, fps: s.fps, threads: 1, encoder };
    let e = crate::codec::ensure(enc, settings, job.keyframe).map_err(|e| host_error("open", e))?;
    let frame = job.pic.to_frame(job.pts);
    let out = e.encode(&frame, job.keyframe).map_err(|e| host_error("encode", e))?;
    Ok(out.map(|e| DeviceAu { data: e.data, pts: e.pts, keyframe: e.keyframe }))
}

fn host_error(what: &str, e: impl std::fmt::Display) -> DeviceError {
    DeviceError { code: "codec_error", api: format!("host encoder ({what})"), message: e.to_string() }
}

impl Drop for HostEncoders {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.jobs = None; // the worker's loop ends when its queue closes
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(width: u32, height: u32) -> RungSettings {
        RungSettings { width, height, bitrate: 400_000, fps: 30.0 }
    }

    fn picture(enc: &mut HostEncoders, rung: usize, w: u32, h: u32, seed: u8) -> HostNv12 {
        let mut p = enc.buffer(rung, w, h, (w as usize).next_multiple_of(64));
        for (i, b) in p.data.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(seed) ^ (i >> 9) as u8;
        }
        p
    }

    #[test]
    fn every_queued_picture_comes_back_in_order_per_rung() {
        let mut enc = HostEncoders::new(2).expect("workers");
        let sizes = [(320, 180), (160, 90)];
        let mut got: Vec<Vec<DeviceAu>> = vec![Vec::new(), Vec::new()];
        for n in 0..12 {
            for (rung, &(w, h)) in sizes.iter().enumerate() {
                let p = picture(&mut enc, rung, w, h, n as u8 + 1);
                let aus = enc.encode(rung, p, n * 3000, n % 6 == 0, &settings(w, h)).expect("encode");
                got[rung].extend(aus);
            }
        }
        for (rung, g) in got.iter_mut().enumerate() {
            g.extend(enc.finish(rung).expect("finish"));
            let pts: Vec<i64> = g.iter().map(|a| a.pts).collect();
            assert_eq!(pts, (0..12).map(|n| n * 3000).collect::<Vec<_>>(), "rung {rung}");
            let keys: Vec<i64> = g.iter().filter(|a| a.keyframe).map(|a| a.pts).collect();
            assert_eq!(keys, vec![0, 18000], "rung {rung}: IDRs where asked");
            let (w, h) = sizes[rung];
            let ts = {
                let mut m = crate::ts::Muxer::new(crate::ts::MuxerConfig { tracks: Vec::new() });
                let mut out = Vec::new();
                for a in g.iter() {
                    m.write_video(&a.data, a.pts as u64, a.pts as u64, a.keyframe, &mut out);
                }
                out
            };
            let frames = crate::probe::decode_video(&ts).expect("decodable");
            assert_eq!(frames.len(), 12);
            assert!(frames.iter().all(|f| (f.width, f.height) == (w, h)), "rung {rung}");
        }
        assert!(enc.finish(0).expect("nothing queued").is_empty());
    }

    #[test]
    fn a_wrong_picture_fails_its_rung_and_the_next_picture_encodes() {
        let mut enc = HostEncoders::new(1).expect("workers");
        let p = picture(&mut enc, 0, 64, 64, 3);
        let r = enc.encode(0, p, 0, true, &settings(128, 64)).and_then(|_| enc.finish(0));
        let e = r.expect_err("a 64x64 picture for a 128x64 rendition");
        assert_eq!(e.code, "codec_error");
        assert!(e.message.contains("64x64"), "{e}");
        let p = picture(&mut enc, 0, 64, 64, 3);
        let mut aus = enc.encode(0, p, 3000, true, &settings(64, 64)).expect("next picture");
        aus.extend(enc.finish(0).expect("finish"));
        assert_eq!(aus.len(), 1);
        assert!(aus[0].keyframe);
    }

    /// A rung's buffers come back from its worker and are handed out again: page-locked ones
    /// (the GPU path) are made once per size, not per picture, and a size no longer asked for
    /// is let go.
    #[test]
    fn buffers_are_recycled_per_size_and_an_old_size_is_let_go() {
        let mut enc = HostEncoders::new(1).expect("workers");
        let mut made = 0;
        for n in 0..24 {
            let p = enc
                .buffer_or(0, (64, 64, 64), || {
                    made += 1;
                    Ok::<_, DeviceError>(HostNv12::new(64, 64, 64))
                })
                .expect("buffer");
            enc.encode(0, p, n * 3000, n == 0, &settings(64, 64)).expect("encode");
        }
        enc.finish(0).expect("finish");
        // A new buffer is made only while every one is queued (QUEUE), being encoded or answered.
        assert!(made <= QUEUE + 2, "{made} buffers made for 24 pictures");
        let spare = enc.workers[0].spare.len();
        assert_eq!(spare, made, "every buffer came back");
        let p = enc.buffer(0, 32, 32, 64);
        assert_eq!(enc.workers[0].spare.len(), 0, "the 64x64 buffers are let go when the size changes");
        enc.give_back(0, p);
        let again = enc.buffer_or(0, (32, 32, 64), || Err(host_error("test", "a new buffer was made")));
        assert!(again.is_ok(), "a given-back buffer is handed out again");
    }
}
