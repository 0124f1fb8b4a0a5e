//! The CUDA kernel source, compiled for the CPU through the emulation header, against the
//! plain-Rust f64 reference: many sizes, odd chroma widths, odd source sizes, padded pitches,
//! several block shapes.

use zerohop_kernels::emu::{LaunchError, scale_ladder};
use zerohop_kernels::{BLOCK, Nv12, reference};

/// A picture with structure at every scale: gradients, a checkerboard band, a sine ring, noise.
fn picture(w: u32, h: u32, pitch: usize, seed: u64) -> Nv12 {
    let mut p = Nv12::new(w, h, pitch, 0xEE); // padding bytes stay 0xEE: must never be read as pixels
    let mut s = seed | 1;
    let mut noise = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 48) as f64 - 24.0
    };
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (f64::from(x) / f64::from(w), f64::from(y) / f64::from(h));
            let ring = ((fx - 0.5).hypot(fy - 0.5) * 80.0).sin() * 60.0;
            let check = if y > h / 3 && y < h / 2 && ((x / 3 + y / 3) % 2 == 0) { 90.0 } else { 0.0 };
            let v = 40.0 + 120.0 * fx + ring + check + noise();
            p.y[y as usize * pitch + x as usize] = v.clamp(0.0, 255.0) as u8;
        }
    }
    for y in 0..h.div_ceil(2) {
        for x in 0..w.div_ceil(2) {
            let i = y as usize * pitch + 2 * x as usize;
            p.uv[i] = (128.0 + 100.0 * (f64::from(x) / 9.0).sin() + noise()).clamp(0.0, 255.0) as u8;
            p.uv[i + 1] = (128.0 + 100.0 * (f64::from(y) / 7.0).cos() + noise()).clamp(0.0, 255.0) as u8;
        }
    }
    p
}

/// Largest difference over visible samples, and how many differ at all.
fn compare(got: &Nv12, want: &Nv12) -> (u8, usize) {
    let (mut max, mut n) = (0u8, 0usize);
    for y in 0..got.height {
        for x in 0..got.width {
            let d = got.luma(x, y).abs_diff(want.luma(x, y));
            max = max.max(d);
            n += usize::from(d > 0);
        }
    }
    for y in 0..got.height / 2 {
        for x in 0..got.width / 2 {
            let (a, b) = (got.chroma(x, y), want.chroma(x, y));
            let d = a.0.abs_diff(b.0).max(a.1.abs_diff(b.1));
            max = max.max(d);
            n += usize::from(d > 0);
        }
    }
    (max, n)
}

fn check(src: &Nv12, rungs: &[(u32, u32, usize)], block: (u32, u32)) {
    let mut dst: Vec<Nv12> = rungs.iter().map(|&(w, h, pitch)| Nv12::new(w, h, pitch, 0xAB)).collect();
    let t = std::time::Instant::now();
    scale_ladder(src, &mut dst, block).expect("launch");
    let emulated = t.elapsed();
    let t = std::time::Instant::now();
    let wants: Vec<Nv12> = dst.iter().map(|d| reference::scale_nv12(src, d.width, d.height)).collect();
    eprintln!("{}x{}: emulated kernel {emulated:?}, f64 reference {:?}", src.width, src.height, t.elapsed());
    for (d, want) in dst.iter().zip(&wants) {
        let (max, n) = compare(d, want);
        let total = (d.width * d.height + d.width * d.height / 2) as usize;
        assert!(
            max <= 1,
            "{}x{} -> {}x{} block {block:?}: max difference {max} ({n} of {total} samples differ)",
            src.width,
            src.height,
            d.width,
            d.height
        );
        // Padding past the width is the caller's: never written.
        for y in 0..d.height as usize {
            assert!(d.y[y * d.pitch + d.width as usize..(y + 1) * d.pitch].iter().all(|&b| b == 0xAB), "padding");
        }
        // +-1 differences come from f32 vs f64 rounding at .5 boundaries: rare.
        assert!(n * 100 <= total, "{n} of {total} samples differ by 1");
    }
}

#[test]
fn the_common_ladder_from_1080p_in_one_launch() {
    let src = picture(1920, 1080, 2048, 1);
    let t = std::time::Instant::now();
    check(&src, &[(1280, 720, 1280), (854, 480, 896), (640, 360, 640), (426, 240, 512)], BLOCK);
    eprintln!("1080p -> 720/480/360/240 emulated + reference: {:?}", t.elapsed());
}

#[test]
fn block_shapes_do_not_change_the_result() {
    let src = picture(480, 270, 512, 2);
    let rungs = [(320, 180, 320), (240, 134, 256), (120, 68, 128)];
    let mut first: Option<Vec<Nv12>> = None;
    for block in [(32, 8), (16, 16), (8, 4), (1, 1), (7, 3), (64, 1)] {
        check(&src, &rungs, block);
        let mut dst: Vec<Nv12> = rungs.iter().map(|&(w, h, p)| Nv12::new(w, h, p, 0)).collect();
        scale_ladder(&src, &mut dst, block).expect("launch");
        match &first {
            None => first = Some(dst),
            Some(f) => assert!(f == &dst, "block {block:?} gave different bytes"),
        }
    }
}

#[test]
fn odd_sources_odd_chroma_widths_upscales_and_padded_pitches() {
    for (sw, sh, pitch, rungs) in [
        (641u32, 359u32, 700usize, vec![(320u32, 180u32, 384usize), (214, 120, 256)]),
        (854, 480, 1024, vec![(426, 240, 426), (854, 480, 1024)]), // 1:1 copy-through rung
        (320, 180, 320, vec![(640, 360, 640), (1280, 720, 1280)]), // upscales: 4-tap kernel
        (1280, 720, 1280, vec![(322, 182, 384), (166, 94, 166), (18, 10, 32)]), // odd chroma widths, 8x band
        (1920, 1080, 1920, vec![(320, 180, 320)]),                 // 6x: widest support
        (2, 2, 2, vec![(2, 2, 2), (4, 4, 4)]),
    ] {
        check(&picture(sw, sh, pitch, u64::from(sw)), &rungs, BLOCK);
    }
}

#[test]
fn flat_pictures_stay_exactly_flat() {
    // Normalised weights: a constant picture is reproduced exactly at every ratio.
    for v in [0u8, 16, 128, 235, 255] {
        let src = Nv12::new(500, 282, 512, v);
        let mut dst = vec![Nv12::new(320, 180, 320, 1), Nv12::new(124, 70, 128, 1), Nv12::new(1000, 564, 1000, 1)];
        scale_ladder(&src, &mut dst, BLOCK).expect("launch");
        for d in &dst {
            assert!(d.y.chunks(d.pitch).all(|r| r[..d.width as usize].iter().all(|&b| b == v)), "luma {v}");
            assert!(d.uv.chunks(d.pitch).all(|r| r[..d.width as usize].iter().all(|&b| b == v)), "chroma {v}");
        }
    }
}

#[test]
fn chroma_siting_follows_h264s_default() {
    // A source whose Cb is a ramp of 4 per chroma column: after a 2x downscale, output chroma
    // column qx sits on output luma column 2qx, i.e. source luma column (2qx + 0.5) * 2 - 0.5 =
    // 4qx + 0.5, i.e. source chroma position 2qx + 0.25 (Cb 8qx + 1); scaling the chroma plane
    // centre-aligned, as if it were sited between luma columns, would give 2qx + 0.5 (8qx + 2).
    let (w, h) = (512u32, 64u32);
    let mut src = Nv12::new(w, h, w as usize, 128);
    for y in 0..(h / 2) as usize {
        for x in 0..(w / 2) as usize {
            src.uv[y * w as usize + 2 * x] = (4 * x).min(255) as u8;
        }
    }
    let mut dst = vec![Nv12::new(w / 2, h / 2, (w / 2) as usize, 0)];
    scale_ladder(&src, &mut dst, BLOCK).expect("launch");
    for qx in 2..30u32 {
        let (cb, _) = dst[0].chroma(qx, 5);
        let want = 4.0 * (2.0 * f64::from(qx) + 0.25);
        assert!((f64::from(cb) - want).abs() <= 0.5 + 1e-9, "qx {qx}: Cb {cb}, sited position {want}");
    }
}

#[test]
fn bad_launches_are_refused_not_run() {
    let src = picture(64, 64, 64, 3);
    let err = scale_ladder(&src, &mut [], BLOCK).expect_err("no rungs");
    assert_eq!(err, LaunchError::Rungs(0));
    let mut nine: Vec<Nv12> = (0..9).map(|_| Nv12::new(16, 16, 16, 0)).collect();
    assert_eq!(scale_ladder(&src, &mut nine, BLOCK), Err(LaunchError::Rungs(9)));
    let mut odd = vec![Nv12::new(15, 16, 16, 0)];
    assert!(matches!(scale_ladder(&src, &mut odd, BLOCK), Err(LaunchError::Picture { .. })));
    let mut short = vec![Nv12::new(16, 16, 16, 0)];
    short[0].uv.truncate(10);
    assert!(matches!(scale_ladder(&src, &mut short, BLOCK), Err(LaunchError::Picture { .. })));
    let mut ok = vec![Nv12::new(16, 16, 16, 0)];
    assert_eq!(scale_ladder(&src, &mut ok, (64, 64)), Err(LaunchError::Block(64, 64)));
}
