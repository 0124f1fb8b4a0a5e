//! Criterion benches of the control plane's byte paths: result-record framing (encode and parse
//! in network-sized pieces), the link's line splitter, and the orchestrator's replayable upload
//! buffer. End-to-end relay throughput over loopback HTTP/2 (TLS and h2c) is
//! `zerohop bench --relay-mib N`, which also counts the orchestrator's own CPU.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zerohop_control::framing::{Kind, RecordReader, encode};
use zerohop_control::link::LineReader;
use zerohop_control::relay::{InputBuf, InputItem};

fn framing(c: &mut Criterion) {
    // 1 MiB of TS in 64 KiB chunks of three renditions, as a segment's results are framed.
    let chunk = vec![0x47u8; 64 * 1024];
    let mut stream = BytesMut::new();
    for i in 0..16u8 {
        encode(Kind::Chunk, i % 3, &chunk, &mut stream);
    }
    let stream = stream.freeze();
    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("encode_1MiB", |b| {
        b.iter(|| {
            let mut out = BytesMut::with_capacity(stream.len());
            for i in 0..16u8 {
                encode(Kind::Chunk, i % 3, black_box(&chunk), &mut out);
            }
            black_box(out.len())
        })
    });
    g.bench_function("parse_1MiB_in_16KiB_pieces", |b| {
        b.iter(|| {
            let mut r = RecordReader::new();
            let mut n = 0;
            for piece in stream.chunks(16 * 1024) {
                r.push(piece);
                while let Some(Ok(rec)) = r.poll() {
                    n += rec.payload.len();
                }
            }
            black_box(n)
        })
    });
    g.finish();
}

fn link_lines(c: &mut Criterion) {
    let line = br#"{"capacity":8,"load":3,"backend":"cpu","gpus":[]}"#;
    let mut data = Vec::new();
    for _ in 0..1000 {
        data.extend_from_slice(line);
        data.push(b'\n');
    }
    let mut g = c.benchmark_group("link");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("split_1000_reports", |b| {
        b.iter(|| {
            let mut r = LineReader::default();
            let mut n = 0;
            for piece in data.chunks(1500) {
                r.push(piece);
                while let Some(Ok(_)) = r.poll() {
                    n += 1;
                }
            }
            black_box(n)
        })
    });
    g.finish();
}

fn upload_buffer(c: &mut Criterion) {
    // 64 MiB pushed in 256 KiB frames and read back by one reader, as the relay does.
    let frame = Bytes::from(vec![0u8; 256 * 1024]);
    let mut g = c.benchmark_group("relay_buffer");
    g.throughput(Throughput::Bytes(64 << 20));
    g.bench_function("push_and_replay_64MiB", |b| {
        b.iter(|| {
            let buf = InputBuf::new();
            let w = buf.writer();
            for _ in 0..256 {
                w.push(frame.clone());
            }
            w.end(Ok(()));
            let (mut i, mut n) = (0, 0);
            while let InputItem::Data(d) = buf.blocking_next(i) {
                n += d.len();
                i += 1;
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    targets = framing, link_lines, upload_buffer
}
criterion_main!(benches);
