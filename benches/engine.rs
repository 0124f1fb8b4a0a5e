//! Criterion benches of the engine's stages on the bundled fixtures:
//! demux, decode, scale (each rung, SIMD and the plain-Rust reference), encode, mux, and the
//! whole segment through a session.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use zerohop_engine::codec::{EncoderSettings, H264Decoder, H264Encoder};
use zerohop_engine::probe::{decode_video, demux_all};
use zerohop_engine::scale::{ScaleFilter, Scaler, reference};
use zerohop_engine::ts::{Demuxer, Muxer, MuxerConfig};
use zerohop_engine::{Frame, Ladder, MemorySink, Session, SessionConfig, StreamSession};

const INPUT: &[u8] = include_bytes!("../tests/fixtures/h264_1080p30_high_bframes_aac.ts");
const RUNGS: [(&str, u32, u32); 4] = [("720p", 1280, 720), ("480p", 854, 480), ("360p", 640, 360), ("240p", 426, 240)];

fn frames() -> Vec<Frame> {
    decode_video(INPUT).expect("decode fixture")
}

fn demux(c: &mut Criterion) {
    let mut g = c.benchmark_group("demux");
    g.throughput(Throughput::Bytes(INPUT.len() as u64));
    g.bench_function("1080p_fixture", |b| {
        b.iter(|| {
            let mut d = Demuxer::new();
            for piece in INPUT.chunks(64 * 1024) {
                d.push(piece);
            }
            d.finish().expect("ts");
            let mut n = 0;
            while d.poll().is_some() {
                n += 1;
            }
            black_box(n)
        })
    });
    g.finish();
}

/// The fixture's access units with their PTS (x264 writes one per PES), in decode order.
fn access_units() -> Vec<(Bytes, i64)> {
    let (program, pes, _, fin) = demux_all(INPUT);
    fin.expect("demux");
    let vpid = program.expect("program").video().expect("video").pid;
    pes.into_iter().filter(|p| p.pid == vpid).map(|p| (p.payload, p.pts.expect("pts") as i64)).collect()
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(60));
    g.bench_function("1080p_60_frames", |b| b.iter(|| black_box(decode_video(INPUT).expect("decode").len())));
    // OpenH264's frame threads on the 1080p High/B-frame fixture: decoder created, every access
    // unit decoded, the reordering drained (what the CPU session does per segment). More than
    // one thread only with ZEROHOP_BENCH_DECODER_THREADS=1: the bundled OpenH264's threaded
    // decode gives other pictures and can deadlock (tests/decode_threads.rs).
    let aus = access_units();
    let most = if std::env::var_os("ZEROHOP_BENCH_DECODER_THREADS").is_some() { 3 } else { 1 };
    for threads in 1..=most {
        g.bench_function(BenchmarkId::new("1080p_60_frames_threads", threads), |b| {
            b.iter(|| {
                let mut d = H264Decoder::with_threads(threads).expect("decoder");
                let mut n = 0;
                for (au, pts) in &aus {
                    d.decode(au, *pts, &mut |_| n += 1).expect("decode");
                }
                d.flush(&mut |_| n += 1).expect("flush");
                assert_eq!(n, 60);
                black_box(n)
            })
        });
    }
    g.finish();
}

fn scale(c: &mut Criterion) {
    let src = frames().swap_remove(10);
    let mut g = c.benchmark_group("scale_1080p_to");
    g.throughput(Throughput::Elements(1));
    for (name, w, h) in RUNGS {
        let mut scaler = Scaler::new(ScaleFilter::CatmullRom);
        let mut dst = Frame::new(w, h, 0);
        g.bench_function(BenchmarkId::new("simd_catmull_rom", name), |b| {
            b.iter(|| scaler.scale_into(black_box(&src), &mut dst).expect("scale"))
        });
        let mut bilinear = Scaler::new(ScaleFilter::Bilinear);
        g.bench_function(BenchmarkId::new("simd_bilinear", name), |b| {
            b.iter(|| bilinear.scale_into(black_box(&src), &mut dst).expect("scale"))
        });
    }
    g.bench_function(BenchmarkId::new("reference_catmull_rom", "720p"), |b| {
        b.iter(|| black_box(reference::scale(ScaleFilter::CatmullRom, &src, 1280, 720)))
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let src = frames();
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(src.len() as u64));
    for (name, w, h) in RUNGS {
        let mut scaler = Scaler::new(ScaleFilter::CatmullRom);
        let scaled: Vec<Frame> = src.iter().map(|f| scaler.scale(f, w, h).expect("scale")).collect();
        g.bench_function(BenchmarkId::new("openh264_60_frames", name), |b| {
            b.iter(|| {
                let mut e = H264Encoder::new(EncoderSettings {
                    encoder: zerohop_engine::codec::CpuEncoder::OpenH264,
                    width: w,
                    height: h,
                    bitrate: 2_000_000,
                    fps: 30.0,
                    threads: 1,
                })
                .expect("encoder");
                let mut bytes = 0;
                for (i, f) in scaled.iter().enumerate() {
                    bytes += e.encode(f, i % 30 == 0).expect("encode").map_or(0, |x| x.data.len());
                }
                black_box(bytes)
            })
        });
    }
    g.finish();
}

/// The encode half of a GPU without NVENC: 2 s of 1080p30 already scaled (as NV12 with the
/// device's 256-byte pitch, as downloaded) into 720p/480p/360p, through `HostEncoders` (one
/// worker per rung, NV12 -> I420 + OpenH264). Wall time on this machine's cores; the CPU time
/// it costs is about the sum of the `encode` group's rungs plus the conversion.
fn host_encode(c: &mut Criterion) {
    use zerohop_engine::accel::RungSettings;
    use zerohop_engine::accel::host_encode::{HostEncoders, HostNv12};
    let src = frames();
    let ladder = [(1280u32, 720u32, 3_000_000u32), (854, 480, 1_600_000), (640, 360, 800_000)];
    let rungs: Vec<Vec<HostNv12>> = ladder
        .iter()
        .map(|&(w, h, _)| {
            let mut scaler = Scaler::new(ScaleFilter::CatmullRom);
            src.iter()
                .map(|f| {
                    HostNv12::from_frame(&scaler.scale(f, w, h).expect("scale"), (w as usize).next_multiple_of(256))
                })
                .collect()
        })
        .collect();
    let mut g = c.benchmark_group("host_encode");
    g.throughput(Throughput::Elements(src.len() as u64));
    g.bench_function("1080p30_2s_ladder_720p_480p_360p", |b| {
        b.iter(|| {
            let mut enc = HostEncoders::new(ladder.len()).expect("workers");
            let mut bytes = 0;
            for i in 0..src.len() {
                for (r, (&(width, height, bitrate), pics)) in ladder.iter().zip(&rungs).enumerate() {
                    let s = RungSettings { width, height, bitrate, fps: 30.0 };
                    let mut buf = enc.buffer(r, width, height, pics[i].pitch);
                    buf.data.copy_from_slice(&pics[i].data);
                    let aus = enc.encode(r, buf, i as i64 * 3000, i % 30 == 0, &s).expect("encode");
                    bytes += aus.iter().map(|a| a.data.len()).sum::<usize>();
                }
            }
            for r in 0..ladder.len() {
                bytes += enc.finish(r).expect("finish").iter().map(|a| a.data.len()).sum::<usize>();
            }
            black_box(bytes)
        })
    });
    g.finish();
}

fn mux(c: &mut Criterion) {
    let (program, pes, _, _) = demux_all(INPUT);
    let vpid = program.expect("program").video().expect("video").pid;
    let aus: Vec<_> = pes.into_iter().filter(|p| p.pid == vpid).collect();
    let bytes: usize = aus.iter().map(|p| p.payload.len()).sum();
    let mut g = c.benchmark_group("mux");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("60_access_units", |b| {
        b.iter(|| {
            let mut m = Muxer::new(MuxerConfig::default());
            let mut out = Vec::with_capacity(bytes * 11 / 10);
            for (i, p) in aus.iter().enumerate() {
                let pts = p.pts.unwrap_or(0);
                m.write_video(&p.payload, pts, pts, i % 30 == 0, &mut out);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

fn segment(c: &mut Criterion) {
    let mut g = c.benchmark_group("segment");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let ladder: Ladder = Ladder::from_json(
        r#"[{"name":"720p","width":1280,"height":720,"bitrate":3000000,"gop":1},
            {"name":"480p","width":854,"height":480,"bitrate":1600000,"gop":1},
            {"name":"360p","width":640,"height":360,"bitrate":800000,"gop":1}]"#,
    )
    .expect("ladder");
    let mut session = Session::open(SessionConfig::new(ladder.clone())).expect("session");
    g.bench_function("1080p30_2s_to_720p_480p_360p", |b| {
        b.iter(|| {
            let (_, sinks) = MemorySink::ladder(ladder.len());
            black_box(session.transcode(Bytes::from_static(INPUT), sinks).expect("transcode").frames_decoded)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = demux, decode, scale, encode, host_encode, mux, segment
}
criterion_main!(benches);
