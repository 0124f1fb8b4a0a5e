//! `zerohop gpu-info`: what the CUDA backend finds on this machine.

use std::process::ExitCode;

use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct GpuInfoArgs {
    /// Open up to this many NVENC sessions per GPU to find the real limit (0: skip).
    #[arg(long, default_value_t = 8)]
    pub probe_sessions: u32,
    /// Run the scaling kernel on each GPU and compare it with the CPU emulation of the same source.
    #[arg(long)]
    pub self_test: bool,
    /// Time the fused ladder kernel (1080p -> 720/480/360/240) on each GPU.
    #[arg(long)]
    pub bench_kernel: bool,
    /// Also write the findings as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[cfg(not(feature = "cuda"))]
pub fn gpu_info(_a: GpuInfoArgs) -> Result<ExitCode> {
    println!("this zerohop was built without the CUDA backend: rebuild with `cargo build --release --features cuda`");
    Ok(ExitCode::from(crate::exit::Exit::NoGpu))
}

#[cfg(feature = "cuda")]
pub fn gpu_info(a: GpuInfoArgs) -> Result<ExitCode> {
    use zerohop_engine::cuda::driver;
    println!("kernels: {}", driver::kernel_form());
    let gpus = match driver::gpus(a.probe_sessions) {
        Ok(g) => g,
        Err(e) => {
            println!("no usable GPU: {e} [{}]", e.code());
            return Ok(ExitCode::from(crate::exit::Exit::NoGpu));
        }
    };
    if gpus.is_empty() {
        println!("the CUDA driver sees no GPU");
        return Ok(ExitCode::from(crate::exit::Exit::NoGpu));
    }
    let mut failed = false;
    let mut report: Vec<serde_json::Value> = Vec::new();
    for g in &gpus {
        let mut entry = serde_json::json!({
            "ordinal": g.ordinal, "name": g.name, "memory_bytes": g.memory_bytes,
            "compute_capability": format!("{}.{}", g.compute_capability.0, g.compute_capability.1),
            "nvdec_h264": g.nvdec.as_ref().map(|c| c.supported).unwrap_or(false),
            "nvenc_sessions": g.nvenc_sessions.as_ref().and_then(|r| r.as_ref().ok()),
        });
        println!(
            "GPU {}: {} ({:.1} GiB, compute {}.{})",
            g.ordinal,
            g.name,
            g.memory_bytes as f64 / (1u64 << 30) as f64,
            g.compute_capability.0,
            g.compute_capability.1
        );
        match &g.nvdec {
            Ok(c) if c.supported => {
                println!("  NVDEC H.264 8-bit 4:2:0: {} engine(s), up to {}x{}", c.engines, c.max_width, c.max_height)
            }
            Ok(_) => println!("  NVDEC H.264 8-bit 4:2:0: not supported"),
            Err(e) => println!("  NVDEC: unavailable ({e})"),
        }
        use zerohop_engine::cuda::CudaError;
        match &g.nvenc_sessions {
            Some(Ok(n)) if *n >= a.probe_sessions => {
                println!("  NVENC H.264: at least {n} concurrent sessions (probe limit)")
            }
            Some(Ok(n)) => println!("  NVENC H.264: {n} concurrent sessions"),
            Some(Err(e @ CudaError::NoEncoder { .. })) => {
                println!("  NVENC: none on this GPU ({e}; H100, H200 and A100 have none)")
            }
            Some(Err(e @ CudaError::NoVideoCapability { .. })) => println!("  NVENC: {e}"),
            Some(Err(e)) => {
                // Not "no NVENC": the probe itself failed, so --gpu-encode auto fails too.
                failed = true;
                entry["nvenc_error"] = e.to_string().into();
                println!("  NVENC probe FAILED: {e} [{}] (not taken for a GPU without NVENC)", e.code())
            }
            None => {}
        }
        // What `--accel cuda --gpu-encode auto` does with this GPU.
        let path = match (&g.nvdec, &g.nvenc_sessions) {
            (Ok(c), Some(Ok(n))) if c.supported && *n > 0 => "gpu",
            (Ok(_), None) => "not probed",
            (Ok(c), Some(Err(CudaError::NoEncoder { .. } | CudaError::NoVideoCapability { .. }))) if c.supported => {
                "cpu"
            }
            (Ok(c), Some(_)) if c.supported => "error",
            _ => "none",
        };
        entry["ladder_encode"] = path.into();
        match path {
            "gpu" => println!("  ladder: decode, scale and encode on the GPU (frames never leave it)"),
            "cpu" => {
                println!("  ladder: decode and scale on the GPU, encode on the CPU (each rung picture copied once)")
            }
            "not probed" => println!("  ladder: encoder not probed (--probe-sessions 0)"),
            "error" => println!("  ladder: fails on this GPU until the NVENC probe failure above is fixed"),
            _ => println!("  ladder: not on this GPU (no NVDEC for H.264)"),
        }
        if a.self_test {
            match self_test(g.ordinal) {
                Ok(max) => {
                    entry["kernel_max_diff"] = max.into();
                    println!("  kernel self-test: 1080p -> 720/480/360/240 on the GPU = CPU emulation (max diff {max})")
                }
                Err(e) => {
                    failed = true;
                    entry["kernel_self_test_error"] = e.to_string().into();
                    println!("  kernel self-test FAILED: {e}");
                }
            }
        }
        if a.bench_kernel {
            let t = zerohop_engine::cuda::driver::Gpu::open(g.ordinal)?.time_ladder(200)?;
            let ms = t.as_secs_f64() * 1e3;
            entry["kernel_ladder_ms"] = ms.into();
            println!("  ladder kernel: {ms:.3} ms per 1080p picture into 4 rungs ({:.0} pictures/s)", 1e3 / ms);
        }
        report.push(entry);
    }
    if let Some(path) = &a.json {
        let doc = serde_json::json!({"kernels": driver::kernel_form(), "gpus": report});
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

#[cfg(feature = "cuda")]
fn self_test(ordinal: usize) -> Result<u8> {
    let max = zerohop_engine::cuda::driver::Gpu::open(ordinal)?.self_test()?;
    anyhow::ensure!(max <= 1, "GPU and CPU emulation differ by up to {max}");
    Ok(max)
}
